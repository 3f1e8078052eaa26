//! The read side of [`KvStore`]: the consistency gate every read passes
//! (linearizable, serializable, `min_revision`), `Get`, `BatchGet` (split by
//! shard and owner, merged back in request order) and `Scan` (paged across
//! shards) from consistent RocksDB snapshots.

use super::*;

impl KvStore {
    /// Makes reads of `shards` on this node safe: in a cluster, checks this
    /// node holds them and, unless the read is `SERIALIZABLE`, waits for a
    /// linearizable read index; then waits for `min_revision`.
    async fn read_gate(
        &self,
        shards: &[ShardId],
        read: Option<&pb::ReadOptions>,
    ) -> Result<(), KvError> {
        if let Writes::Replicated(c) = &self.inner.writes {
            for &s in shards {
                if c.member_group(s).is_none() {
                    let hint = c
                        .leader(s)
                        .map(|l| format!("; its leader is node {} at {}", l.id, l.addr))
                        .unwrap_or_default();
                    return Err(KvError::Unavailable(format!(
                        "shard {s} has no replica on node {}{hint}; send reads for it to a node that holds it (cairn-client routes by shard map)",
                        self.inner.node_id
                    )));
                }
            }
            let serializable =
                read.is_some_and(|r| r.consistency == pb::Consistency::Serializable as i32);
            if !serializable {
                let barriers = shards.iter().map(|&s| c.read_barrier(s));
                for r in futures::future::join_all(barriers).await {
                    r?;
                }
            }
        }
        if let (Some(&s), true) = (shards.first(), shards.len() == 1) {
            self.wait_read(s, read).await?;
        }
        Ok(())
    }

    async fn wait_read(
        &self,
        shard: ShardId,
        read: Option<&pb::ReadOptions>,
    ) -> Result<(), KvError> {
        let min = read.map_or(0, |r| r.min_revision);
        if min == 0 {
            return Ok(());
        }
        let progress = &self.inner.progress;
        if progress.wait_for(shard, min, MIN_REVISION_WAIT).await {
            Ok(())
        } else {
            Err(KvError::RevisionNotReached {
                shard,
                min_revision: min,
                current: progress.revision(shard),
            })
        }
    }

    fn shard_state_at(
        &self,
        snap: &rocksdb::SnapshotWithThreadMode<'_, crate::storage::Db>,
        shard: ShardId,
    ) -> Result<ShardState, KvError> {
        let meta = self.inner.engine.cf(CF_META)?;
        Ok(match snap.get_cf(meta, shard_state_key(shard))? {
            Some(b) => ShardState::decode(&b)?,
            None => ShardState::default(),
        })
    }

    /// Reads one key.
    ///
    /// # Errors
    /// Bad key, `min_revision` timeout, storage failure.
    pub async fn get(&self, req: &pb::GetRequest) -> Result<pb::GetResponse, KvError> {
        self.get_from(req, false).await
    }

    /// [`KvStore::get`], for a request another node `forwarded` here (it is
    /// then never forwarded again).
    ///
    /// # Errors
    /// As `get`; `UNAVAILABLE` when a forwarded read finds no replica here.
    pub async fn get_from(
        &self,
        req: &pb::GetRequest,
        forwarded: bool,
    ) -> Result<pb::GetResponse, KvError> {
        self.inner.limits.check_key(&req.key)?;
        let shard = self.inner.shards.shard_for_key(&req.key);
        if let Writes::Replicated(c) = &self.inner.writes {
            let (_, remote) = forward::split(c, &[shard], forwarded)?;
            if let Some(r) = remote.first() {
                return forward::get(c, &r.to, req).await;
            }
        }
        self.read_gate(&[shard], req.read.as_ref()).await?;
        let now = self.inner.clock.now_ms();
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let revision = self.shard_state_at(&snap, shard)?.revision;
        let data = self.inner.engine.cf(CF_DATA)?;
        let kv = match snap.get_cf(data, data_key(shard, &req.key))? {
            Some(bytes) => {
                let r = Record::decode(&bytes)?;
                (!r.meta.is_expired(now)).then(|| to_kv(&req.key, &r.meta, Some(&r.value)))
            }
            None => None,
        };
        Ok(pb::GetResponse {
            header: Some(self.header(revision, Some(shard))),
            kv,
        })
    }

    /// Reads many keys from one snapshot; results in request order.
    ///
    /// # Errors
    /// Bad keys, too many keys, `min_revision` timeout, storage failure.
    pub async fn batch_get(
        &self,
        req: &pb::BatchGetRequest,
    ) -> Result<pb::BatchGetResponse, KvError> {
        self.batch_get_from(req, false).await
    }

    /// [`KvStore::batch_get`], for a request another node `forwarded` here.
    /// Keys of shards held elsewhere are read there (one request per node,
    /// concurrently) and put back in request order.
    ///
    /// # Errors
    /// As `batch_get`; a forwarded node's error is passed on.
    pub async fn batch_get_from(
        &self,
        req: &pb::BatchGetRequest,
        forwarded: bool,
    ) -> Result<pb::BatchGetResponse, KvError> {
        let limits = &self.inner.limits;
        limits.check_batch_totals("batch_get", req.keys.len(), 0)?;
        let mut shards = Vec::with_capacity(req.keys.len());
        for k in &req.keys {
            limits.check_key(k)?;
            shards.push(self.inner.shards.shard_for_key(k));
        }
        let mut distinct = shards.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if req.read.as_ref().is_some_and(|r| r.min_revision > 0) && distinct.len() > 1 {
            return Err(cross_shard_token());
        }
        if let Writes::Replicated(c) = &self.inner.writes {
            let (local, remote) = forward::split(c, &distinct, forwarded)?;
            if !remote.is_empty() {
                return self.batch_get_split(c, req, &shards, &local, remote).await;
            }
        }
        self.batch_get_local(req, &shards, &distinct).await
    }

    /// A BatchGet whose keys live partly on other nodes: the local part and
    /// one request per other node run concurrently; results go back to
    /// their keys' positions.
    async fn batch_get_split(
        &self,
        cluster: &Cluster,
        req: &pb::BatchGetRequest,
        shards: &[ShardId],
        local: &[ShardId],
        remote: Vec<forward::RemoteShards>,
    ) -> Result<pb::BatchGetResponse, KvError> {
        // The request positions each part answers for.
        let positions = |set: &[ShardId]| -> Vec<usize> {
            (0..shards.len())
                .filter(|&i| set.binary_search(&shards[i]).is_ok())
                .collect()
        };
        let local_pos = positions(local);
        let local_req = batch_get::part(req, &local_pos);
        let local_shards: Vec<ShardId> = local_pos.iter().map(|&i| shards[i]).collect();
        let local_part = async {
            if local_pos.is_empty() {
                return Ok(None);
            }
            self.batch_get_local(&local_req, &local_shards, local)
                .await
                .map(Some)
        };
        let remote_pos: Vec<Vec<usize>> = remote.iter().map(|r| positions(&r.shards)).collect();
        let remote_parts = futures::future::try_join_all(
            remote
                .iter()
                .zip(&remote_pos)
                .map(|(r, pos)| forward::batch_get(cluster, &r.to, batch_get::part(req, pos))),
        );
        let (local_resp, remote_resps) =
            futures::future::try_join(local_part, remote_parts).await?;

        let parts = local_resp
            .map(|r| (local_pos, r))
            .into_iter()
            .chain(remote_pos.into_iter().zip(remote_resps));
        let (results, revision) = batch_get::merge(req.keys.len(), parts)
            .map_err(|e| KvError::Internal(e.to_string()))?;
        Ok(pb::BatchGetResponse {
            header: Some(self.header(revision, None)),
            results,
        })
    }

    /// Reads keys of shards this node holds, from one snapshot.
    async fn batch_get_local(
        &self,
        req: &pb::BatchGetRequest,
        shards: &[ShardId],
        distinct: &[ShardId],
    ) -> Result<pb::BatchGetResponse, KvError> {
        self.read_gate(distinct, req.read.as_ref()).await?;
        let now = self.inner.clock.now_ms();
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let data = self.inner.engine.cf(CF_DATA)?;
        let mut results = Vec::with_capacity(req.keys.len());
        let mut revision = 0;
        let mut seen = std::collections::HashSet::new();
        for (k, &s) in req.keys.iter().zip(shards) {
            if seen.insert(s) {
                revision = revision.max(self.shard_state_at(&snap, s)?.revision);
            }
            let kv = match snap.get_cf(data, data_key(s, k))? {
                Some(bytes) => {
                    let r = Record::decode(&bytes)?;
                    (!r.meta.is_expired(now)).then(|| to_kv(k, &r.meta, Some(&r.value)))
                }
                None => None,
            };
            results.push(pb::BatchGetResult {
                found: kv.is_some(),
                kv,
            });
        }
        let single = (seen.len() == 1).then(|| shards[0]);
        Ok(pb::BatchGetResponse {
            header: Some(self.header(revision, single)),
            results,
        })
    }

    /// Lists keys in order across all shards, one page at a time.
    ///
    /// # Errors
    /// Bad range or token, limit too large, `min_revision` timeout, storage failure.
    pub async fn scan(&self, req: pb::ScanRequest) -> Result<pb::ScanResponse, KvError> {
        self.scan_from(req, false).await
    }

    /// [`KvStore::scan`], for a request another node `forwarded` here.
    /// Shards held elsewhere are scanned there (one request per node,
    /// concurrently) and the pages merged in key order.
    ///
    /// # Errors
    /// As `scan`; a forwarded node's error is passed on.
    pub async fn scan_from(
        &self,
        req: pb::ScanRequest,
        forwarded: bool,
    ) -> Result<pb::ScanResponse, KvError> {
        let plan = scan::ScanPlan::new(&req, &self.inner.limits)?;
        if req.read.as_ref().is_some_and(|r| r.min_revision > 0) {
            return Err(cross_shard_token());
        }
        let shards = self.requested_shards(&req.shards)?;
        let Writes::Replicated(c) = &self.inner.writes else {
            return self.scan_local(plan, shards, req.read.as_ref()).await;
        };
        let (local, remote) = forward::split(c, &shards, forwarded)?;
        if remote.is_empty() {
            return self.scan_local(plan, local, req.read.as_ref()).await;
        }
        let limit = plan.limit();
        let local_part = async {
            if local.is_empty() {
                return Ok(None);
            }
            self.scan_local(plan, local, req.read.as_ref())
                .await
                .map(Some)
        };
        let remote_parts = futures::future::try_join_all(remote.into_iter().map(|r| {
            let sub = pb::ScanRequest {
                shards: r.shards,
                ..req.clone()
            };
            async move { forward::scan(c, &r.to, sub).await }
        }));
        let (local_page, remote_pages) =
            futures::future::try_join(local_part, remote_parts).await?;
        let parts = local_page.into_iter().chain(remote_pages).collect();
        let (kvs, next_page_token, revision) = merge_responses(parts, limit)
            .map_err(|e| KvError::Internal(format!("merging scan pages: {e}")))?;
        Ok(pb::ScanResponse {
            header: Some(self.header(revision, None)),
            kvs,
            next_page_token,
        })
    }

    /// The shards a scan covers: all, or the listed ones (validated, sorted,
    /// without duplicates).
    fn requested_shards(&self, listed: &[u32]) -> Result<Vec<ShardId>, KvError> {
        let count = self.inner.shards.get();
        if listed.is_empty() {
            return Ok((0..count).collect());
        }
        if let Some(bad) = listed.iter().find(|&&s| s >= count) {
            return Err(KvError::invalid(
                ErrorCode::BadShard,
                format!("shard {bad} does not exist (the cluster has {count} shards)"),
            ));
        }
        let mut shards = listed.to_vec();
        shards.sort_unstable();
        shards.dedup();
        Ok(shards)
    }

    /// One scan page over `shards`, all held by this node.
    async fn scan_local(
        &self,
        plan: scan::ScanPlan,
        shards: Vec<ShardId>,
        read: Option<&pb::ReadOptions>,
    ) -> Result<pb::ScanResponse, KvError> {
        self.read_gate(&shards, read).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.scan_blocking(&plan, &shards))
            .await
            .map_err(|e| KvError::Internal(format!("scan task failed: {e}")))?
    }

    fn scan_blocking(
        &self,
        plan: &scan::ScanPlan,
        shards: &[ShardId],
    ) -> Result<pb::ScanResponse, KvError> {
        let db = self.inner.engine.db();
        let snap = db.snapshot();
        let mut revision = 0;
        for &s in shards {
            revision = revision.max(self.shard_state_at(&snap, s)?.revision);
        }
        let data = self.inner.engine.cf(CF_DATA)?;
        let now = self.inner.clock.now_ms();
        let (kvs, next_page_token) = plan.run(shards, now, |lower, upper| {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(lower);
            if let Some(u) = upper {
                ro.set_iterate_upper_bound(u);
            }
            ro.set_snapshot(&snap);
            snap_iter(db, data, ro)
        })?;
        Ok(pb::ScanResponse {
            header: Some(self.header(revision, None)),
            kvs,
            next_page_token,
        })
    }
}

fn snap_iter<'a>(
    db: &'a crate::storage::Db,
    cf: &rocksdb::ColumnFamily,
    ro: ReadOptions,
) -> rocksdb::DBRawIteratorWithThreadMode<'a, crate::storage::Db> {
    db.raw_iterator_cf_opt(cf, ro)
}

/// `min_revision` is a revision of one shard, so it cannot bound a read
/// that spans shards; refusing beats waiting for a revision other shards may
/// never reach.
fn cross_shard_token() -> KvError {
    KvError::invalid(
        ErrorCode::MinRevisionCrossShard,
        "min_revision is a per-shard token: it applies to Get and to a BatchGet whose keys share one shard, not to Scan or multi-shard BatchGet",
    )
}
