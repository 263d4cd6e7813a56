//! The OpenAPI 3.1 document of the admin API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

pub fn document() -> Value {
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
                    "responses": { "201": { "description": "registered", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Store" } } } }, "400": err, "401": err, "409": err } }
            },
            "/api/v1/stores/{name}": {
                "delete": { "summary": "Unregister a store (its data is left alone)", "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "204": { "description": "removed" }, "400": err, "401": err, "404": err } }
            },
            "/api/v1/stores/{name}/rescan": {
                "post": { "summary": "Reconcile an fs store's index with its files", "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "200": { "description": "what the scan found", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ScanReport" } } } }, "400": err, "401": err, "404": err } }
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
                "ScanReport": { "type": "object", "properties": {
                    "buckets": { "type": "integer" }, "files": { "type": "integer" }, "added": { "type": "integer" },
                    "updated": { "type": "integer" }, "removed": { "type": "integer" }, "skipped": { "type": "integer" } } }
            }
        }
    })
}
