//! `cairnctl cluster status`, `cairnctl cluster transfer-leader` and
//! `cairnctl shards`: the admin API rendered as tables (or JSON).

use std::io::Write;

use anyhow::Context;
use cairn_client::{Client, ClientError};
use cairn_proto::admin::v1 as apb;
use serde_json::json;

use super::args::ClusterCommand;
use super::execute::Format;
use super::failure::client_error;

/// A failed admin call as cairnctl reports it: a standalone node (no admin
/// API) is named as such rather than as "not implemented".
pub fn admin_error(e: ClientError) -> anyhow::Error {
    if e.code() == Some(tonic::Code::Unimplemented) {
        anyhow::anyhow!(
            "this node is standalone (started without --bootstrap or --join); it has no cluster to show"
        )
    } else {
        client_error(e)
    }
}

/// A node state as shown to users.
pub fn state_name(state: i32) -> &'static str {
    match apb::NodeState::try_from(state) {
        Ok(apb::NodeState::Active) => "active",
        Ok(apb::NodeState::Draining) => "draining",
        Ok(apb::NodeState::Removed) => "removed",
        Ok(apb::NodeState::Dead) => "dead",
        _ => "unknown",
    }
}

fn replicas_text(s: &apb::ShardInfo) -> String {
    s.replicas
        .iter()
        .map(|r| {
            let mut t = r.node_id.to_string();
            if !r.voter {
                t.push_str("(learner)");
            }
            if r.lag > 0 {
                t.push_str(&format!("+{}", r.lag));
            }
            t
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn shard_json(s: &apb::ShardInfo) -> serde_json::Value {
    json!({
        "shard": s.shard,
        "leader": s.leader_id,
        "term": s.term,
        "revision": s.revision,
        "replicas": s.replicas.iter().map(|r| json!({"node": r.node_id, "voter": r.voter, "lag": r.lag})).collect::<Vec<_>>(),
    })
}

/// Runs a `cairnctl cluster` subcommand.
pub async fn cluster(
    client: &Client,
    command: ClusterCommand,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => status(client, format, out).await,
        ClusterCommand::TransferLeader { shard, to } => {
            let r = client
                .admin()
                .transfer_leader(shard, to)
                .await
                .map_err(admin_error)?;
            if format.json {
                writeln!(out, "{}", json!({"shard": shard, "leader": r.leader_id}))?;
            } else {
                writeln!(out, "shard {shard} is now led by node {}", r.leader_id)?;
            }
            Ok(())
        }
    }
}

async fn status(client: &Client, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    let s = client.admin().cluster_status().await.map_err(admin_error)?;
    let info = s.cluster.context("status without cluster info")?;
    let rf = info.replication_factor as usize;
    let leaderless = s.shards.iter().filter(|x| x.leader_id == 0).count();
    let under = s
        .shards
        .iter()
        .filter(|x| x.replicas.iter().filter(|r| r.voter).count() < rf)
        .count();
    let lagging = s
        .shards
        .iter()
        .filter(|x| x.replicas.iter().any(|r| r.lag > 0))
        .count();
    if format.json {
        let v = json!({
            "cluster_id": info.cluster_id,
            "shards": info.shards,
            "replication_factor": info.replication_factor,
            "placement_epoch": info.placement_epoch,
            "nodes": s.nodes.iter().map(|n| json!({
                "id": n.id, "addr": n.addr, "http_addr": n.http_addr, "rack": n.rack,
                "state": state_name(n.state),
                "reachable": n.reachable, "leaders": n.leaders, "replicas": n.replicas,
            })).collect::<Vec<_>>(),
            "shards_without_leader": leaderless,
            "shards_under_replicated": under,
            "shards_lagging": lagging,
            "meta": s.meta.as_ref().map(shard_json),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "cluster {}  shards {}  replication factor {}  placement epoch {}",
        info.cluster_id, info.shards, info.replication_factor, info.placement_epoch
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<6} {:<22} {:<22} {:<8} {:<9} {:>7} {:>8}",
        "NODE", "GRPC", "HTTP", "STATE", "REACHABLE", "LEADERS", "REPLICAS"
    )?;
    for n in &s.nodes {
        writeln!(
            out,
            "{:<6} {:<22} {:<22} {:<8} {:<9} {:>7} {:>8}",
            n.id,
            n.addr,
            n.http_addr,
            state_name(n.state),
            if n.reachable { "yes" } else { "NO" },
            if n.reachable {
                n.leaders.to_string()
            } else {
                "-".into()
            },
            if n.reachable {
                n.replicas.to_string()
            } else {
                "-".into()
            },
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "shards: {} total, {} without a leader, {} under-replicated, {} with lagging replicas",
        s.shards.len(),
        leaderless,
        under,
        lagging
    )?;
    if let Some(m) = &s.meta {
        writeln!(
            out,
            "meta group: leader {}, replicas {}",
            m.leader_id,
            replicas_text(m)
        )?;
    }
    Ok(())
}

/// `cairnctl shards`
pub async fn shards(client: &Client, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    let m = client.admin().shard_map().await.map_err(admin_error)?;
    if format.json {
        // One object per shard; `replicas` lists node ids (voters, then
        // learners) so scripts can use it directly.
        let v: Vec<serde_json::Value> = m
            .shards
            .iter()
            .map(|s| {
                json!({
                    "shard": s.shard,
                    "leader": s.leader_id,
                    "replicas": s.replicas.iter().map(|r| r.node_id).collect::<Vec<_>>(),
                    "learners": s.replicas.iter().filter(|r| !r.voter).map(|r| r.node_id).collect::<Vec<_>>(),
                    "term": s.term,
                    "revision": s.revision,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<6} {:<7} {:<6} {:>9}  REPLICAS (node, +lag in entries)",
        "SHARD", "LEADER", "TERM", "REVISION"
    )?;
    for s in &m.shards {
        writeln!(
            out,
            "{:<6} {:<7} {:<6} {:>9}  {}",
            s.shard,
            if s.leader_id == 0 {
                "-".to_string()
            } else {
                s.leader_id.to_string()
            },
            s.term,
            s.revision,
            replicas_text(s)
        )?;
    }
    Ok(())
}
