//! Single-key writes and reads: revisions and versions, conditions, `Update`, `Delete`.

use cairn_proto::kv::v1 as pb;
use tonic::Code;

use super::{KvApi, expect_code, get, put, value_of};
use crate::unique_prefix;

/// Put creates with version 1 and create = mod revision; overwrite keeps
/// create_revision, raises version and mod_revision; Get returns exactly that.
pub async fn put_get_and_revisions<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("put"));
    let r1 = kv.put(put(k.clone(), "v1")).await.unwrap().into_inner();
    let m1 = r1.kv.clone().unwrap();
    assert!(r1.created);
    assert_eq!(m1.version, 1);
    assert_eq!(m1.create_revision, m1.mod_revision);
    assert_eq!(r1.header.as_ref().unwrap().revision, m1.mod_revision);
    let got = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(got.value, b"v1");
    assert_eq!(got.mod_revision, m1.mod_revision);

    let mut p2 = put(k.clone(), "v2");
    p2.return_previous = true;
    let r2 = kv.put(p2).await.unwrap().into_inner();
    let m2 = r2.kv.clone().unwrap();
    assert!(!r2.created);
    assert_eq!(m2.version, 2);
    assert_eq!(m2.create_revision, m1.create_revision);
    assert!(m2.mod_revision > m1.mod_revision);
    assert_eq!(r2.previous.unwrap().value, b"v1");
    let got = kv.get(get(k.clone())).await.unwrap().into_inner();
    assert_eq!(got.kv.as_ref().unwrap().value, b"v2");
    assert!(got.header.unwrap().revision >= m2.mod_revision);

    // Binary keys and empty values are fine.
    let bin = vec![0u8, 255, 10, b'/', 0];
    kv.put(put(bin.clone(), Vec::new())).await.unwrap();
    let got = value_of(&mut kv, &bin).await.unwrap();
    assert_eq!(got.value, b"");
    assert!(
        value_of(&mut kv, format!("{k}-missing").as_bytes())
            .await
            .is_none()
    );
}

/// `if_absent` and `if_mod_revision` refuse with FAILED_PRECONDITION and
/// change nothing; matching conditions write.
pub async fn conditional_puts<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("cond"));
    let mut p = put(k.clone(), "first");
    p.if_absent = true;
    let r = kv.put(p.clone()).await.unwrap().into_inner();
    let rev = r.kv.unwrap().mod_revision;
    p.value = b"second".to_vec();
    expect_code(kv.put(p).await, Code::FailedPrecondition, "already exists");
    let mut p = put(k.clone(), "third");
    p.if_mod_revision = Some(rev + 1000);
    expect_code(
        kv.put(p.clone()).await,
        Code::FailedPrecondition,
        "mod_revision",
    );
    let now = value_of(&mut kv, k.as_bytes()).await.unwrap();
    assert_eq!(
        (now.value.as_slice(), now.mod_revision),
        (&b"first"[..], rev)
    );
    p.if_mod_revision = Some(rev);
    kv.put(p).await.unwrap();
    assert_eq!(
        value_of(&mut kv, k.as_bytes()).await.unwrap().value,
        b"third"
    );
    // if_mod_revision = 0 means "must not exist".
    let mut p = put(format!("{k}-new"), "x");
    p.if_mod_revision = Some(0);
    kv.put(p.clone()).await.unwrap();
    expect_code(kv.put(p).await, Code::FailedPrecondition, "mod_revision");
}

/// `Update` is NOT_FOUND for a missing key and replaces an existing one.
pub async fn update_only_if_present<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("update"));
    let up = |v: &str| pb::UpdateRequest {
        key: k.clone().into_bytes(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    };
    expect_code(kv.update(up("x")).await, Code::NotFound, "not found");
    assert!(
        value_of(&mut kv, k.as_bytes()).await.is_none(),
        "failed update must not create"
    );
    kv.put(put(k.clone(), "a")).await.unwrap();
    let r = kv.update(up("b")).await.unwrap().into_inner();
    assert_eq!(r.kv.unwrap().version, 2);
    assert_eq!(value_of(&mut kv, k.as_bytes()).await.unwrap().value, b"b");
}

/// `Delete` reports whether the key existed; conditions are honoured.
pub async fn delete_reports_existence<K: KvApi>(mut kv: K) {
    let k = format!("{}/k", unique_prefix("delete"));
    let del = |rev: Option<u64>| pb::DeleteRequest {
        key: k.clone().into_bytes(),
        if_mod_revision: rev,
        return_previous: true,
        request_id: Default::default(),
    };
    let r = kv.delete(del(None)).await.unwrap().into_inner();
    assert!(!r.existed);
    let rev = kv
        .put(put(k.clone(), "v"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap()
        .mod_revision;
    expect_code(
        kv.delete(del(Some(rev + 1))).await,
        Code::FailedPrecondition,
        "mod_revision",
    );
    assert!(value_of(&mut kv, k.as_bytes()).await.is_some());
    let r = kv.delete(del(Some(rev))).await.unwrap().into_inner();
    assert!(r.existed);
    assert_eq!(r.previous.unwrap().value, b"v");
    assert!(value_of(&mut kv, k.as_bytes()).await.is_none());
    // Re-creating starts a new life: version 1, new create_revision.
    let again = kv
        .put(put(k.clone(), "w"))
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();
    assert_eq!(again.version, 1);
    assert!(again.create_revision > rev);
}
