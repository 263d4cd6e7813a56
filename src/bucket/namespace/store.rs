//! The [`Store`] face of a namespace bucket: every S3 operation mapped onto its targets with
//! the write machinery of the parent module (reads from the first read target that answers,
//! writes fanned out with the journal recording what a secondary still owes).

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::uploads;
use super::{BucketChange, Namespace, Roles, secondary_opts, skipped};
use crate::bucket::tee::{Hashing, tee};
use crate::store::{
    BucketInfo, BucketName, ByteStream, Caps, CompletedPart, CopyOptions, DeleteResult, Error,
    GetOptions, GetResult, ListPage, ListQuery, ObjectKey, ObjectMeta, PartInfo, PartsPage,
    PutOptions, Result, SharedDigests, Store, Tags, UploadsPage, UploadsQuery, Versioning,
    VersionsPage, VersionsQuery,
};

/// Bytes buffered per secondary before it is cut from a PUT.
const TEE_BYTES: usize = 4 * 1024 * 1024;
/// Bodies declared at most this long are hashed once, in the tee, for every target.
const SHARED_HASH_MAX: u64 = 256 * 1024;

#[async_trait]
impl Store for Namespace {
    fn name(&self) -> &str {
        &self.name
    }

    fn caps(&self) -> Caps {
        Caps {
            // Times are not carried to the secondaries.
            keeps_modified: false,
            ..self.roles().primary.store.caps()
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Ok(Vec::new())
    }

    async fn create_bucket(&self, _bucket: &BucketName) -> Result<()> {
        Err(Error::BucketAlreadyExists {
            bucket: self.name.clone(),
        })
    }

    async fn delete_bucket(&self, _bucket: &BucketName) -> Result<()> {
        // A bucket that is not empty answers as any other does; an empty one is still an
        // admin's to remove, with its policy and journal.
        let q = VersionsQuery {
            max_keys: 1,
            ..Default::default()
        };
        let page = read_first!(self, |l| l.store.list_versions(&l.bucket, &q))?;
        if !page.versions.is_empty() || !page.common_prefixes.is_empty() {
            return Err(Error::BucketNotEmpty {
                bucket: self.name.clone(),
            });
        }
        Err(Error::InvalidArgument(format!(
            "{} is a namespace bucket: remove it with `ferry bucket remove`",
            self.name
        )))
    }

    async fn head_bucket(&self, _bucket: &BucketName) -> Result<BucketInfo> {
        let mut info = read_first!(self, |l| l.store.head_bucket(&l.bucket))?;
        info.name = self.name.clone();
        Ok(info)
    }

    async fn get_versioning(&self, _bucket: &BucketName) -> Result<Versioning> {
        read_first!(self, |l| l.store.get_versioning(&l.bucket))
    }

    async fn set_versioning(&self, _bucket: &BucketName, state: Versioning) -> Result<()> {
        self.bucket_change(BucketChange::Versioning(state)).await
    }

    async fn get_bucket_tags(&self, _bucket: &BucketName) -> Result<Option<Tags>> {
        read_first!(self, |l| l.store.get_bucket_tags(&l.bucket))
    }

    async fn put_bucket_tags(&self, _bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
        self.bucket_change(BucketChange::Tags(tags)).await
    }

    async fn put_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let gate = self.gate.enter().await;
        gate.run(self.put_within(key, body, opts))
            .await
            .map_err(|c| c.answer(&self.name))?
    }

    async fn get_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        read_first!(
            self,
            |l| l.store.get_object(&l.bucket, key, opts.clone()),
            fresh | _r | self.stale_key(l, key.as_str())
        )
    }

    async fn head_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta> {
        read_first!(
            self,
            |l| l.store.head_object(&l.bucket, key, version_id),
            fresh | _r | self.stale_key(l, key.as_str())
        )
    }

    async fn delete_object(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        if version_id.is_some() {
            // Version ids differ between stores: the worker syncs the key's new current state.
            let w = self.begin_owed(key, "delete").await?;
            let p = &w.roles.primary;
            let r = w
                .gate
                .run(p.store.delete_object(&p.bucket, key, version_id))
                .await;
            return self.end_owed(w, r);
        }
        let gate = self.gate.enter().await;
        gate.run(self.delete_within(key))
            .await
            .map_err(|c| c.answer(&self.name))?
    }

    async fn copy_object(
        &self,
        _src_bucket: &BucketName,
        src_key: &ObjectKey,
        _dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        let w = self.begin_owed(dst_key, "object").await?;
        let p = &w.roles.primary;
        let r = w
            .gate
            .run(
                p.store
                    .copy_object(&p.bucket, src_key, &p.bucket, dst_key, opts),
            )
            .await;
        self.end_owed_object(w, r).await
    }

    async fn get_object_tags(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)> {
        read_first!(
            self,
            |l| l.store.get_object_tags(&l.bucket, key, version_id),
            fresh | _r | self.stale_key(l, key.as_str())
        )
    }

    async fn put_object_tags(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String> {
        let w = self.begin_owed(key, "tags").await?;
        let p = &w.roles.primary;
        let r = w
            .gate
            .run(p.store.put_object_tags(&p.bucket, key, version_id, tags))
            .await;
        self.end_owed(w, r)
    }

    async fn list_objects(&self, _bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        read_first!(
            self,
            |l| l.store.list_objects(&l.bucket, query),
            fresh
                | r
                | self.stale_listing(
                    l,
                    &query.prefix,
                    query.start_after.as_deref().map(|k| (k, false)),
                    r.as_ref().ok().and_then(|p| p.next_marker.as_deref())
                )
        )
    }

    async fn list_versions(
        &self,
        _bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage> {
        read_first!(
            self,
            |l| l.store.list_versions(&l.bucket, query),
            fresh
                | r
                | self.stale_listing(
                    l,
                    &query.prefix,
                    // A page resumed within a key's versions lists that key again.
                    query
                        .key_marker
                        .as_deref()
                        .map(|k| (k, query.version_id_marker.is_some())),
                    r.as_ref().ok().and_then(|p| p.next_key_marker.as_deref())
                )
        )
    }

    async fn create_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        let gate = self.gate.enter().await;
        let roles = self.roles();
        self.writable_key(&roles, key)?;
        let p = &roles.primary;
        let id = gate
            .run(p.store.create_multipart(&p.bucket, key, opts))
            .await
            .map_err(|c| c.answer(&self.name))??;
        Ok(uploads::tagged(p, &id))
    }

    async fn upload_part(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo> {
        let gate = self.gate.enter().await;
        let roles = self.roles();
        self.writable(&roles)?;
        let p = &roles.primary;
        let id = uploads::route(&self.name, &roles, p, upload_id)?;
        gate.run(
            p.store
                .upload_part(&p.bucket, key, id, part_number, body, opts),
        )
        .await
        .map_err(|c| c.answer(&self.name))?
    }

    async fn complete_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&crate::store::Checksum>,
    ) -> Result<ObjectMeta> {
        let w = self.begin_owed(key, "object").await?;
        let p = &w.roles.primary;
        let r = match uploads::route(&self.name, &w.roles, p, upload_id) {
            Ok(id) => {
                w.gate
                    .run(
                        p.store
                            .complete_multipart(&p.bucket, key, id, parts, checksum),
                    )
                    .await
            }
            Err(e) => Ok(Err(e)),
        };
        self.end_owed_object(w, r).await
    }

    async fn abort_multipart(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        let gate = self.gate.enter().await;
        let roles = self.roles();
        self.writable(&roles)?;
        // An upload begun on another of the bucket's targets (before a failover) is aborted
        // there: a client told "no such upload" would leave its parts behind for ever.
        let (leg, id) = uploads::holder_of(&roles, upload_id);
        gate.run(leg.store.abort_multipart(&leg.bucket, key, id))
            .await
            .map_err(|c| c.answer(&self.name))?
    }

    async fn part_range(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<crate::store::PartRange> {
        read_first!(
            self,
            |l| l.store.part_range(&l.bucket, key, version_id, part),
            fresh | _r | self.stale_key(l, key.as_str())
        )
    }

    async fn list_parts(
        &self,
        _bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let roles = self.roles();
        let h = uploads::holder(&roles);
        let id = uploads::route(&self.name, &roles, h, upload_id)?;
        h.store
            .list_parts(&h.bucket, key, id, part_number_marker, max_parts)
            .await
    }

    async fn list_uploads(
        &self,
        _bucket: &BucketName,
        query: &UploadsQuery,
    ) -> Result<UploadsPage> {
        let roles = self.roles();
        let h = uploads::holder(&roles);
        let mut q = query.clone();
        q.upload_id_marker = query
            .upload_id_marker
            .as_deref()
            .and_then(|m| uploads::marker(h, m));
        let mut page = h.store.list_uploads(&h.bucket, &q).await?;
        for u in &mut page.uploads {
            u.upload_id = uploads::tagged(h, &u.upload_id);
        }
        page.next_upload_id_marker = page.next_upload_id_marker.map(|m| uploads::tagged(h, &m));
        Ok(page)
    }
}

impl Namespace {
    /// The roles a write runs with (refused while failed over read-only), and whether the
    /// primary is its only target: then nothing is journaled, and the write waits only for a
    /// catch-up copy of its key to the primary still in flight.
    /// A delete needs no key every target can hold: a target that cannot hold it does not,
    /// and deleting it there is done (a probe could not delete `x//y` an S3 primary served).
    async fn write_roles(
        &self,
        key: &ObjectKey,
        deleting: bool,
    ) -> Result<(std::sync::Arc<Roles>, bool)> {
        let roles = self.roles();
        match deleting {
            true => self.writable(&roles)?,
            false => self.writable_key(&roles, key)?,
        }
        let alone = roles.secondaries.is_empty();
        if alone {
            self.locks
                .wait_copies_to(&roles.primary.label, &self.name, key.as_str())
                .await;
        }
        Ok((roles, alone))
    }

    /// A DELETE (no version named), run within its pass of the gate: to the primary and
    /// every secondary, owed where not taken.
    async fn delete_within(&self, key: &ObjectKey) -> Result<DeleteResult> {
        let (roles, alone) = self.write_roles(key, true).await?;
        let p = &roles.primary;
        if alone {
            return p.store.delete_object(&p.bucket, key, None).await;
        }
        let _g = self.lock_key(&roles, key.as_str()).await;
        let pending = self.owe(&roles, key.as_str(), "object", 0).await?;
        let sec: Vec<BoxFuture<'_, Result<DeleteResult>>> = roles
            .secondaries
            .iter()
            .map(|s| {
                if self.is_down(&s.label) || roles.deferred.contains(&s.label) {
                    skipped()
                } else {
                    s.store.delete_object(&s.bucket, key, None)
                }
            })
            .collect();
        // The primary first: a delete it refuses (down, its folder missing) reaches no
        // secondary, so reads that fall back to one do not lose the object the client was
        // told is still there (found by a probe). The key stays owed to every secondary: the
        // primary may have deleted it all the same (an answer lost, a commit whose file moves
        // failed), and the catch-up brings them to whatever the primary holds.
        let first = p.store.delete_object(&p.bucket, key, None).await;
        if first.is_err() {
            self.settle(pending, true, &vec![false; roles.secondaries.len()]);
            return first;
        }
        let (r, took) = self
            .fan_out(&roles, std::future::ready(first), sec, key.as_str())
            .await;
        self.settle(pending, r.is_ok(), &took);
        r
    }

    /// A PUT, run within its pass of the gate: to the primary and every secondary, owed
    /// where not taken.
    async fn put_within(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let (roles, alone) = self.write_roles(key, false).await?;
        let p = &roles.primary;
        if alone {
            return p.store.put_object(&p.bucket, key, body, opts).await;
        }
        let _g = self.lock_key(&roles, key.as_str()).await;
        // The journal rows are committed while the body streams; the tee holds the end of
        // every body until they are, so no target can commit the write before it is owed.
        let record = self.owe(&roles, key.as_str(), "object", opts.size_hint.unwrap_or(0));
        let (recorded_tx, recorded_rx) = tokio::sync::oneshot::channel();
        let record = async move {
            let r = record.await;
            let _ = recorded_tx.send(r.is_ok());
            r
        };
        let up: Vec<bool> = roles
            .secondaries
            .iter()
            .map(|s| !self.is_down(&s.label) && !roles.deferred.contains(&s.label))
            .collect();
        let n_up = up.iter().filter(|u| **u).count();
        // A small body is hashed once, in the tee, for every target. A large one is hashed
        // by each target on a thread of its own: in the tee, MD5 would slow the one task
        // that receives the body.
        let mut opts = opts;
        let hashing =
            (n_up > 0 && opts.size_hint.is_some_and(|n| n <= SHARED_HASH_MAX)).then(|| {
                let into = SharedDigests::default();
                opts.shared_digests = Some(into.clone());
                Hashing {
                    algorithm: opts.checksum_algorithm,
                    into,
                }
            });
        let (lead, follow) = tee(body, n_up, TEE_BYTES, Some(recorded_rx), hashing);
        let mut follow = follow.into_iter();
        let sec: Vec<BoxFuture<'_, Result<ObjectMeta>>> = roles
            .secondaries
            .iter()
            .zip(&up)
            .map(
                |(s, up)| match (up, if *up { follow.next() } else { None }) {
                    (true, Some(stream)) => {
                        let o = secondary_opts(&opts);
                        Box::pin(async move { s.store.put_object(&s.bucket, key, stream, o).await })
                            as BoxFuture<'_, _>
                    }
                    _ => skipped(),
                },
            )
            .collect();
        let primary = p.store.put_object(&p.bucket, key, lead, opts);
        let (recorded, (r, took)) =
            tokio::join!(record, self.fan_out(&roles, primary, sec, key.as_str()));
        // Not recorded: every body ended with an error, nothing was committed anywhere.
        let pending = recorded?;
        self.settle(pending, r.is_ok(), &took);
        r
    }
}
