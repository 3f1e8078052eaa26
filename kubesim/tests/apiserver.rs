//! The in-memory API server through kube-rs, as the operator uses it: the
//! protocol details a controller depends on (resource versions, watch
//! replay and expiry, status isolation, generations, finalizers, garbage
//! collection, Server-Side Apply, custom resources and their scale).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::time::Duration;

use anyhow::Result;
use cairn_kubesim::apiserver::{ApiServer, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use serde_json::json;

fn config_map(name: &str, value: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name}, "data": {"k": value}
    }))?)
}

#[tokio::test]
async fn objects_get_versions_and_conflicts_like_kube_apiserver() -> Result<()> {
    let server = ApiServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let created = api
        .create(&PostParams::default(), &config_map("a", "1")?)
        .await?;
    assert!(created.uid().is_some() && created.resource_version().is_some());
    let again = api
        .create(&PostParams::default(), &config_map("a", "1")?)
        .await;
    assert!(
        matches!(again, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists")
    );

    let mut newer = created.clone();
    newer.data = Some([("k".to_owned(), "2".to_owned())].into());
    api.replace("a", &PostParams::default(), &newer).await?;
    // The same stale version again: a conflict, and nothing changes.
    let stale = api.replace("a", &PostParams::default(), &created).await;
    assert!(matches!(stale, Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "Conflict"));
    assert_eq!(
        api.get("a").await?.data.and_then(|d| d.get("k").cloned()),
        Some("2".into())
    );
    let missing = api.get("nope").await;
    assert!(matches!(missing, Err(kube::Error::Api(e)) if e.code == 404));
    assert_eq!(api.get_opt("nope").await?, None);

    // Label selectors filter lists.
    let mut labelled = config_map("b", "1")?;
    labelled.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
    api.create(&PostParams::default(), &labelled).await?;
    let names: Vec<String> = api
        .list(&kube::api::ListParams::default().labels("app=x"))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["b"]);
    Ok(())
}

#[tokio::test]
async fn a_watch_replays_from_its_version_and_an_expired_one_gets_410() -> Result<()> {
    let server = ApiServer::start_with(Options {
        event_log_capacity: 4,
        ..Options::default()
    })
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let first = api
        .create(&PostParams::default(), &config_map("w", "1")?)
        .await?;
    let from = first.resource_version().unwrap_or_default();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await?;
    api.delete("w", &DeleteParams::default()).await?;
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(1), &from)
        .await?
        .take(2)
        .try_collect()
        .await?;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);

    for i in 0..10 {
        api.create(&PostParams::default(), &config_map(&format!("n{i}"), "1")?)
            .await?;
    }
    let mut expired = api
        .watch(&WatchParams::default().timeout(1), &from)
        .await?
        .boxed();
    match expired.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => anyhow::bail!("expected a 410 error event, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn status_is_its_own_subresource_and_generation_counts_spec_changes() -> Result<()> {
    let server = ApiServer::start().await?;
    let api: Api<StatefulSet> = Api::namespaced(server.client(), "ns");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "s"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {}}
    }))?;
    let ssa = PatchParams::apply("test").force();
    let created = api.patch("s", &ssa, &Patch::Apply(&set)).await?;
    assert_eq!(created.metadata.generation, Some(1), "apply creates");
    api.patch_status(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 7}, "spec": {"replicas": 9}})),
    )
    .await?;
    let after_status = api.get("s").await?;
    assert_eq!(
        after_status.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "/status ignores spec"
    );
    assert_eq!(after_status.metadata.generation, Some(1));
    let mut grown = set.clone();
    if let Some(spec) = grown.spec.as_mut() {
        spec.replicas = Some(3);
    }
    let applied = api.patch("s", &ssa, &Patch::Apply(&grown)).await?;
    assert_eq!(
        applied.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
    assert_eq!(
        applied.status.map(|s| s.replicas),
        Some(7),
        "the main resource keeps status"
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_their_dependents_along() -> Result<()> {
    let server = ApiServer::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let mut held = config_map("held", "1")?;
    held.metadata.finalizers = Some(vec!["test/keep".into()]);
    api.create(&PostParams::default(), &held).await?;
    api.delete("held", &DeleteParams::default()).await?;
    let marked = api.get("held").await?;
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "marked, not removed"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert!(
        api.get_opt("held").await?.is_none(),
        "gone once its finalizers are"
    );

    let owner = api
        .create(&PostParams::default(), &config_map("owner", "1")?)
        .await?;
    let reference =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid()}]);
    for name in ["dependent", "orphan-to-be"] {
        let mut d = config_map(name, "1")?;
        d.metadata.owner_references = Some(serde_json::from_value(reference.clone())?);
        api.create(&PostParams::default(), &d).await?;
    }
    api.delete("owner", &DeleteParams::default()).await?;
    assert!(
        api.get_opt("dependent").await?.is_none(),
        "collected with its owner"
    );
    assert!(api.get_opt("orphan-to-be").await?.is_none());

    let owner = api
        .create(&PostParams::default(), &config_map("owner2", "1")?)
        .await?;
    let mut d = config_map("kept", "1")?;
    d.metadata.owner_references = Some(serde_json::from_value(
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.uid()}]),
    )?);
    api.create(&PostParams::default(), &d).await?;
    api.delete("owner2", &DeleteParams::orphan()).await?;
    let kept = api.get("kept").await?;
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "orphaned, reference stripped"
    );
    Ok(())
}

#[tokio::test]
async fn a_crd_registers_its_kind_with_status_and_scale() -> Result<()> {
    let server = ApiServer::start().await?;
    let client = server.client();
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}}}]}
        }))?;
    Api::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await?;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, "ns", &resource);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}
    }))?;
    api.create(&PostParams::default(), &widget).await?;
    assert_eq!(
        api.get_scale("w").await?.spec.and_then(|s| s.replicas),
        Some(2)
    );
    api.patch_scale(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await?;
    assert_eq!(api.get("w").await?.data["spec"]["size"], 5);

    // A controller over the custom kind sees it (list + watch as kube-runtime does it).
    let seen = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default())
        .applied_objects()
        .take(1)
        .try_collect::<Vec<_>>();
    let seen = tokio::time::timeout(Duration::from_secs(30), seen).await??;
    assert_eq!(seen[0].name_any(), "w");
    Ok(())
}
