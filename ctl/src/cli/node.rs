//! `cairnctl node drain|cancel-drain|evacuate-leaders|restore-leaders|replace|remove`: a node's lifecycle through the
//! admin API, and `--wait` to follow a drain to its end.

use std::io::Write;
use std::time::Duration;

use cairn_client::{Client, NodeAction};
use cairn_proto::admin::v1 as apb;
use serde_json::json;

use super::admin::{admin_error, state_name};
use super::args::{NodeCommand, RebalanceCommand};
use super::execute::Format;

/// How often `--wait` looks at the cluster.
const POLL: Duration = Duration::from_secs(1);

/// Runs a `cairnctl node` subcommand.
pub async fn run(
    client: &Client,
    command: NodeCommand,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (id, action, wait) = match command {
        NodeCommand::Drain { id, wait } => (id, NodeAction::Drain, wait.then_some(Until::Drained)),
        NodeCommand::EvacuateLeaders { id, wait } => (
            id,
            NodeAction::EvacuateLeaders,
            wait.then_some(Until::NoLeaderships),
        ),
        NodeCommand::RestoreLeaders { id } => (id, NodeAction::RestoreLeaders, None),
        NodeCommand::CancelDrain { id } => (id, NodeAction::CancelDrain, None),
        NodeCommand::Replace { id, force } => (id, NodeAction::Replace { force }, None),
        NodeCommand::Remove { id } => (id, NodeAction::Remove, None),
    };
    let reply = if action == NodeAction::Remove {
        remove(client, id).await?
    } else {
        client.admin().node(id, action).await.map_err(admin_error)?
    };
    // With --wait, what was waited for: the last line says it is done, not
    // the state the request found (a drained node is still "draining").
    let finished = match wait {
        Some(until) => {
            follow(client, id, until, format, out).await?;
            Some(match until {
                Until::Drained => "drained: no replicas or leaderships left",
                Until::NoLeaderships => "evacuated: no leaderships left",
            })
        }
        None => None,
    };
    let verb = action.name();
    if format.json {
        let mut v = json!({"node": id, "state": state_name(reply.state)});
        if finished.is_some() {
            v["done"] = json!(true);
        }
        writeln!(out, "{v}")?;
    } else if let Some(done) = finished {
        writeln!(out, "{verb}: node {id} is {done}")?;
    } else {
        writeln!(out, "{verb}: node {id} is {}", state_name(reply.state))?;
    }
    Ok(())
}

/// `RemoveNode`, retried while the meta leadership moves (a node leading
/// the meta group hands it over before it can be removed).
async fn remove(client: &Client, id: u64) -> anyhow::Result<apb::NodeStateResponse> {
    let mut tries = 0;
    loop {
        match client.admin().node(id, NodeAction::Remove).await {
            Ok(r) => return Ok(r),
            Err(e) if e.code() == Some(tonic::Code::Unavailable) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(admin_error(e)),
        }
    }
}

/// What `--wait` waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// No replica and no leadership left (the node must stay draining).
    Drained,
    /// No leadership left.
    NoLeaderships,
}

/// Polls the cluster until node `id` reaches `until`, printing progress;
/// fails if a drain is cancelled or the node removed meanwhile.
async fn follow(
    client: &Client,
    id: u64,
    until: Until,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut last = None;
    loop {
        let status = match client.admin().cluster_status().await {
            Ok(s) => s,
            Err(e) if e.code() == Some(tonic::Code::Unavailable) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(admin_error(e)),
        };
        let Some(node) = status.nodes.iter().find(|n| n.id == id) else {
            anyhow::bail!("node {id} is not a member of this cluster");
        };
        let expected = match until {
            Until::Drained => node.state == apb::NodeState::Draining as i32,
            Until::NoLeaderships => node.evacuating_leaders,
        };
        if !expected {
            anyhow::bail!(
                "node {id} is {} now; the request was cancelled or superseded",
                state_name(node.state)
            );
        }
        let held = status
            .shards
            .iter()
            .filter(|s| s.replicas.iter().any(|r| r.node_id == id))
            .count();
        let led = status.shards.iter().filter(|s| s.leader_id == id).count();
        let leaderless = status.shards.iter().filter(|s| s.leader_id == 0).count();
        let held = if until == Until::Drained { held } else { 0 };
        if held == 0 && led == 0 && leaderless == 0 {
            return Ok(());
        }
        if last != Some((held, led)) && !format.json {
            writeln!(out, "node {id}: {held} replicas and {led} leaderships left")?;
            out.flush()?;
        }
        last = Some((held, led));
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `cairnctl rebalance status`.
pub async fn rebalance(
    client: &Client,
    command: RebalanceCommand,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let stall_after = match command {
        RebalanceCommand::Status { stall_after } => stall_after,
        RebalanceCommand::Pause | RebalanceCommand::Resume => {
            let paused = matches!(command, RebalanceCommand::Pause);
            let r = client
                .admin()
                .pause_rebalance(paused)
                .await
                .map_err(admin_error)?;
            return plan_state(&r, format, out);
        }
        RebalanceCommand::Cancel => {
            let r = client
                .admin()
                .cancel_rebalance()
                .await
                .map_err(admin_error)?;
            return plan_state(&r, format, out);
        }
    };
    let r = client
        .admin()
        .rebalance_status(Some(Duration::from_secs(stall_after.into())))
        .await
        .map_err(admin_error)?;
    if format.json {
        let v = json!({
            "placement_epoch": r.placement_epoch,
            "moves_total": r.moves_total,
            "moves_done": r.moves_done,
            "moves_remaining": r.moves_remaining,
            "replicas_catching_up": r.replicas_catching_up,
            "leaders_to_move": r.leaders_to_move,
            "shards_without_leader": r.shards_without_leader,
            "moves_per_second": r.moves_per_second,
            "eta_seconds": r.eta_seconds,
            "stalled": r.stalled,
            "stalled_reason": r.stalled_reason,
            "paused": r.paused,
            "moves_in_flight": r.moves_in_flight,
            "bytes_remaining": r.bytes_remaining,
            "bytes_moved": r.bytes_moved,
            "bytes_per_second": r.bytes_per_second,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let paused = if r.paused {
        " (PAUSED: cairnctl rebalance resume)"
    } else {
        ""
    };
    if r.moves_remaining == 0 && r.shards_without_leader == 0 {
        writeln!(
            out,
            "balanced: every shard is at its target placement (epoch {}){paused}",
            r.placement_epoch
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "plan epoch {}, {} shards moving now{paused}",
        r.placement_epoch, r.moves_in_flight
    )?;
    writeln!(out, "{}", progress_line(r.moves_done, r.moves_total))?;
    writeln!(
        out,
        "{} moves left, {} replicas catching up, {} leaderships to move, {} shards without a leader",
        r.moves_remaining, r.replicas_catching_up, r.leaders_to_move, r.shards_without_leader
    )?;
    writeln!(
        out,
        "data: {:.1} MiB copied, about {:.1} MiB left",
        r.bytes_moved as f64 / MIB,
        r.bytes_remaining as f64 / MIB
    )?;
    if r.moves_per_second > 0.0 {
        writeln!(
            out,
            "rate {:.2} moves/s ({:.1} MiB/s), about {}s left",
            r.moves_per_second,
            r.bytes_per_second / MIB,
            r.eta_seconds
        )?;
    }
    if r.stalled {
        writeln!(out, "STALLED: {}", r.stalled_reason)?;
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

/// Prints the plan's state after a pause, resume or cancel.
fn plan_state(r: &apb::PlanResponse, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
    if format.json {
        let v = json!({ "placement_epoch": r.placement_epoch, "paused": r.paused });
        writeln!(out, "{v}")?;
    } else if r.paused {
        writeln!(
            out,
            "rebalance paused at plan epoch {} (moves in flight finish)",
            r.placement_epoch
        )?;
    } else {
        writeln!(out, "rebalance running at plan epoch {}", r.placement_epoch)?;
    }
    Ok(())
}

/// `moves 12/40 [######..............] 30%`
fn progress_line(done: u32, total: u32) -> String {
    const WIDTH: u32 = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "moves {done}/{total} [{}{}] {pct}%",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn progress_bar_fills_with_the_moves_done() {
        assert_eq!(
            progress_line(0, 10),
            format!("moves 0/10 [{}] 0%", ".".repeat(30))
        );
        assert_eq!(
            progress_line(5, 10),
            format!("moves 5/10 [{}{}] 50%", "#".repeat(15), ".".repeat(15))
        );
        assert_eq!(
            progress_line(0, 0),
            format!("moves 0/0 [{}] 100%", "#".repeat(30))
        );
    }
}
