//! The OpenAPI 3.1 document of the admin API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

pub fn document() -> Value {
    let name_param =
        json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } });
    let id_param =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } });
    let target = json!({ "type": "object", "required": ["store", "bucket"], "properties": { "store": { "type": "string" }, "bucket": { "type": "string" } } });
    let err = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Ferry admin API", "version": env!("CARGO_PKG_VERSION") },
        "security": [{ "bearer": [] }],
        "paths": {
            "/health": { "get": { "summary": "Liveness", "security": [], "responses": { "200": { "description": "alive" } } } },
            "/ready": { "get": { "summary": "Readiness (state database reachable)", "security": [], "responses": { "200": { "description": "ready" }, "503": err } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "security": [], "responses": { "200": { "description": "OpenMetrics text" } } } },
            "/api/v1/stores": {
                "get": { "summary": "List registered stores", "responses": {
                    "200": { "description": "stores", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Store" } } } } },
                    "401": err } },
                "post": { "summary": "Register a store", "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/AddStore" } } } },
                    "responses": { "201": { "description": "registered; for an s3 store whose first call (a listing of its buckets) failed, `warning` says how (it stays registered)", "content": { "application/json": { "schema": { "allOf": [ { "$ref": "#/components/schemas/Store" }, { "type": "object", "properties": { "warning": { "type": "string" } } } ] } } } }, "400": err, "401": err, "409": err, "413": err, "415": err } }
            },
            "/api/v1/stores/{name}": {
                "delete": { "summary": "Unregister a store (its data is left alone)", "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "204": { "description": "removed" }, "400": err, "401": err, "404": err, "409": err } }
            },
            "/api/v1/stores/{name}/rescan": {
                "post": { "summary": "Reconcile an fs store's index with its files", "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "adopt", "in": "query", "required": false, "schema": { "type": "boolean" }, "description": "take bucket folders replaced since they were recorded as the buckets'" }],
                    "responses": { "200": { "description": "what the scan found", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ScanReport" } } } }, "400": err, "401": err, "404": err } }
            },
            "/api/v1/buckets": {
                "get": { "summary": "List namespace buckets", "responses": {
                    "200": { "description": "buckets", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Bucket" } } } } },
                    "401": err } },
                "post": { "summary": "Create a namespace bucket (and its targets' buckets if missing)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CreateBucket" } } } },
                    "responses": { "201": { "description": "created (`warning`: a backfill of what the primary holds was cut short and goes on in the background)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bucket" } } } }, "400": err, "401": err, "409": err, "413": err, "415": err, "502": err, "503": err } }
            },
            "/api/v1/buckets/{name}": {
                "get": { "summary": "Mode, health and backlog per target", "parameters": [name_param.clone()],
                    "responses": { "200": { "description": "status", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/BucketStatus" } } } }, "401": err, "404": err } },
                "delete": { "summary": "Stop serving a namespace bucket (targets' data stays)", "parameters": [name_param.clone(),
                        { "name": "drop_owed", "in": "query", "required": false, "schema": { "type": "boolean" }, "description": "give up what the targets are still owed instead of refusing (409)" }],
                    "responses": { "204": { "description": "removed" }, "400": err, "401": err, "404": err, "409": err, "503": err } }
            },
            "/api/v1/buckets/{name}/policy": {
                "put": { "summary": "Replace write_to / read_from (not while failed over)", "parameters": [name_param.clone()],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Policy" } } } },
                    "responses": { "200": { "description": "new policy (`warning`: a backfill of an added secondary was cut short and goes on in the background)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bucket" } } } }, "400": err, "401": err, "404": err, "409": err, "413": err, "415": err, "502": err, "503": err } }
            },
            "/api/v1/buckets/{name}/failover": {
                "post": { "summary": "Serve the bucket from one of its secondaries", "parameters": [name_param.clone()],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["to", "mode"], "properties": {
                        "to": { "type": "string", "description": "store of a secondary write target" },
                        "mode": { "type": "string", "enum": ["read-only", "read-write"] } } } } } },
                    "responses": { "200": { "description": "failed over (`warning`: the target did not answer)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bucket" } } } }, "400": err, "401": err, "404": err, "409": err, "413": err, "415": err, "503": err } }
            },
            "/api/v1/buckets/{name}/failback": {
                "post": { "summary": "Return to the primary (after read-write failover: drain, verify and repair, brief write pause, switch)",
                    "parameters": [name_param.clone(), { "name": "wait", "in": "query", "schema": { "type": "boolean" } }],
                    "responses": { "200": { "description": "back on the primary (wait=true)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Bucket" } } } },
                        "202": { "description": "failback started" }, "400": err, "401": err, "404": err, "503": err } }
            },
            "/api/v1/jobs": {
                "get": { "summary": "List jobs (migrations) with their counters",
                    "responses": { "200": { "description": "jobs", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } } } } }, "401": err } },
                "post": { "summary": "Check both sides and start a migration job (or resume the unfinished one with the same fingerprint); the server runs it",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["spec"], "properties": {
                        "spec": { "type": "object", "description": "src, dst (each {kind: store|s3|dir, …}) and options, as `ferry migrate` builds it" },
                        "fingerprint": { "type": "string" } } } } } },
                    "responses": { "201": { "description": "started" }, "200": { "description": "resumed" }, "400": err, "401": err, "413": err, "415": err, "503": err } }
            },
            "/api/v1/jobs/{id}": {
                "get": { "summary": "A job with its task counts and unfinished tasks (in flight with finished parts, retrying, dead)",
                    "parameters": [id_param.clone()],
                    "responses": { "200": { "description": "detail", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobDetail" } } } }, "401": err, "404": err } }
            },
            "/api/v1/jobs/{id}/pause": {
                "post": { "summary": "Pause: transfers stop at a part boundary; answers once none runs",
                    "parameters": [id_param.clone()],
                    "responses": { "200": { "description": "paused" }, "401": err, "404": err, "409": err, "503": err } }
            },
            "/api/v1/jobs/{id}/resume": {
                "post": { "summary": "Resume a paused job", "parameters": [id_param.clone()],
                    "responses": { "200": { "description": "running" }, "401": err, "404": err, "409": err } }
            },
            "/api/v1/jobs/{id}/cancel": {
                "post": { "summary": "Cancel a job (its unfinished multipart uploads are aborted)", "parameters": [id_param.clone()],
                    "responses": { "200": { "description": "cancelled" }, "401": err, "404": err, "409": err } }
            },
            "/api/v1/jobs/{id}/dead": {
                "get": { "summary": "A page of the job's dead-letter list: tasks that failed for good, with their last error, in task order; ask again with `after` set to the last one's id until a page comes back empty",
                    "parameters": [id_param.clone(),
                        { "name": "after", "in": "query", "required": false, "schema": { "type": "integer", "default": 0 }, "description": "the id of the last dead letter of the page before" },
                        { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 10000, "default": 1000 } }],
                    "responses": { "200": { "description": "dead tasks", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/DeadLetter" } } } } }, "400": err, "401": err, "404": err } }
            },
            "/api/v1/jobs/{id}/retry-dead": {
                "post": { "summary": "Put the dead letters back in the queue", "parameters": [id_param.clone()],
                    "responses": { "200": { "description": "how many were requeued" }, "401": err, "404": err } }
            },
            "/api/v1/verify": {
                "post": { "summary": "Compare two store:bucket[/prefix] listings",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["a", "b"], "properties": {
                        "a": { "type": "string" }, "b": { "type": "string" },
                        "download": { "type": "boolean", "description": "read and compare the bytes of every pair of objects of the same size (as rclone check --download)" } } } } } },
                    "responses": { "200": { "description": "differences (at most 100,000 listed) and totals", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Verify" } } } }, "400": err, "401": err, "404": err, "413": err, "415": err, "503": err } }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Store": { "type": "object", "required": ["name", "kind", "location"], "properties": {
                    "name": { "type": "string" }, "kind": { "type": "string", "enum": ["fs", "s3"] },
                    "location": { "type": "string" }, "region": { "type": "string" } } },
                "AddStore": { "type": "object", "required": ["name", "kind"], "properties": {
                    "name": { "type": "string" }, "kind": { "type": "string", "enum": ["fs", "s3"] },
                    "path": { "type": "string" }, "endpoint": { "type": "string" }, "region": { "type": "string" },
                    "path_style": { "type": "boolean" }, "access_key": { "type": "string" }, "secret_key": { "type": "string", "writeOnly": true },
                    "checksum_mode": { "type": "string", "enum": ["when_required", "when_supported"] } } },
                "Policy": { "type": "object", "required": ["write_to"], "properties": {
                    "write_to": { "type": "array", "items": { "type": "string", "description": "store:bucket; the first is the primary" } },
                    "read_from": { "type": "array", "items": { "type": "string" } },
                    "drop_owed": { "type": "boolean", "description": "give up what the targets left out are still owed instead of refusing (409)" },
                    "delete_extra": { "type": "boolean", "description": "an added secondary's keys the primary lacks are deleted instead of the change being refused (409)" } } },
                "CreateBucket": { "type": "object", "required": ["name", "write_to"], "properties": {
                    "name": { "type": "string" },
                    "write_to": { "type": "array", "items": { "type": "string" } },
                    "read_from": { "type": "array", "items": { "type": "string" } },
                    "delete_extra": { "type": "boolean", "description": "a secondary's keys the primary lacks are deleted instead of the creation being refused (409)" } } },
                "Bucket": { "type": "object", "required": ["name", "policy", "mode"], "properties": {
                    "name": { "type": "string" }, "mode": { "type": "string" },
                    "warning": { "type": "string", "description": "what the change went ahead despite" },
                    "policy": { "type": "object", "properties": {
                        "write_to": { "type": "array", "items": target.clone() },
                        "read_from": { "type": "array", "items": target.clone() },
                        "failover": { "type": "object", "properties": { "to": target.clone(), "mode": { "type": "string" }, "since_ms": { "type": "integer" } } } } } } },
                "BucketStatus": { "type": "object", "properties": {
                    "name": { "type": "string" }, "mode": { "type": "string" }, "owed_total": { "type": "integer" },
                    "failback_error": { "type": "object", "description": "why the last failback failed, until the next one starts", "properties": { "error": { "type": "string" }, "at_ms": { "type": "integer" } } },
                    "targets": { "type": "array", "items": { "type": "object", "properties": {
                        "target": { "type": "string" }, "role": { "type": "string", "enum": ["primary", "secondary", "owed", "reader"] },
                        "healthy": { "type": "boolean" }, "error": { "type": "string" },
                        "owed_count": { "type": "integer" }, "owed_bytes": { "type": "integer" },
                        "oldest_owed_age_s": { "type": "number" }, "synced": { "type": "integer" }, "synced_bytes": { "type": "integer" },
                        "backfill_after": { "type": "string", "description": "present while the target's backfill from the primary is not done: the last key journaled for it (empty before the first); it is owed more than owed_count" } } } } } },
                "Verify": { "type": "object", "properties": {
                    "summary": { "type": "object", "properties": { "compared": { "type": "integer" }, "differences": { "type": "integer" }, "size_only": { "type": "integer" } } },
                    "differences": { "type": "array", "items": { "type": "object", "properties": {
                        "kind": { "type": "string", "enum": ["only-in-a", "only-in-b", "size", "content"] }, "key": { "type": "string" } } } },
                    "truncated": { "type": "boolean" } } },
                "Job": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "kind": { "type": "string", "enum": ["migrate"] },
                    "spec": { "type": "object", "description": "src, dst and options (never credentials)" },
                    "state": { "type": "string", "enum": ["running", "paused", "done", "cancelled"] },
                    "listing_done": { "type": "boolean" }, "listed": { "type": "integer" }, "listed_bytes": { "type": "integer" },
                    "unchanged": { "type": "integer" }, "done": { "type": "integer" }, "done_bytes": { "type": "integer" },
                    "dead": { "type": "integer" }, "created_ms": { "type": "integer" }, "updated_ms": { "type": "integer" },
                    "finished_ms": { "type": ["integer", "null"] }, "error": { "type": ["string", "null"] },
                    "runner_seen_ms": { "type": ["integer", "null"], "description": "last heartbeat of a process running the job" },
                    "unattended": { "type": "boolean", "description": "running, but no process has run it for 20 s (killed, or not picked up)" } } },
                "JobTask": { "type": "object", "properties": {
                    "key": { "type": "string" }, "state": { "type": "string", "enum": ["pending", "running", "dead"] },
                    "size": { "type": "integer" }, "attempts": { "type": "integer" }, "upload_id": { "type": ["string", "null"] },
                    "parts_done": { "type": "integer" }, "bytes_done": { "type": "integer" }, "error": { "type": ["string", "null"] } } },
                "DeadLetter": { "type": "object", "properties": {
                    "id": { "type": "integer", "description": "the task's id: where the next page starts" }, "key": { "type": "string" },
                    "size": { "type": "integer" }, "attempts": { "type": "integer" }, "error": { "type": ["string", "null"] } } },
                "JobDetail": { "type": "object", "properties": {
                    "job": { "$ref": "#/components/schemas/Job" },
                    "tasks": { "type": "object", "properties": { "pending": { "type": "integer" }, "running": { "type": "integer" }, "dead": { "type": "integer" } } },
                    "open": { "type": "array", "items": { "$ref": "#/components/schemas/JobTask" } },
                    "runners": { "type": "array", "description": "processes that ran the job in the last day, most recent first",
                        "items": { "type": "object", "properties": { "owner": { "type": "string" }, "seen_ms": { "type": "integer" } } } } } },
                "ScanReport": { "type": "object", "properties": {
                    "buckets": { "type": "integer" }, "files": { "type": "integer" }, "added": { "type": "integer" },
                    "updated": { "type": "integer" }, "removed": { "type": "integer" }, "skipped": { "type": "integer" },
                    "unreadable": { "type": "integer" }, "problems": { "type": "array", "items": { "type": "string" } } } }
            }
        }
    })
}
