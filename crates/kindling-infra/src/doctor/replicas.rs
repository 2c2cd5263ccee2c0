//! Highly available provisioning: each replica of `provisioning.replicas` answers `/healthz`
//! (`ok`, or `degraded: <why>`) and serves the same revision; with `--store`, each etcd member is
//! healthy and the store has a revision, the one the replicas serve.

use std::net::SocketAddr;

use super::{Area, Finding, Request, Severity};

fn finding(severity: Severity, check: &'static str, subject: &str, what: String) -> Finding {
    Finding::new(severity, Area::Provisioning, check, subject, what)
}

/// Runs the replica and store checks; nothing when the site has one provisioning host and no
/// store was named.
pub fn check(req: &Request) -> Vec<Finding> {
    let provisioning = &req.description.inventory.provisioning;
    let port = crate::site::server_port(&req.description);
    let Ok(client) = req.http_client(None) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut served = Vec::new();
    for replica in &provisioning.replicas {
        let addr = SocketAddr::new(*replica, port);
        let subject = addr.to_string();
        let target = kindling_http::Target::at(addr, replica.to_string());
        let check = "provisioning.replica";
        match client.get(&target, "/healthz") {
            Ok(r) if r.status == 200 => {
                let text = String::from_utf8_lossy(&r.body).trim().to_string();
                out.push(match text.strip_prefix("degraded: ") {
                    None => finding(Severity::Ok, check, &subject, "healthy".into()),
                    Some(why) => finding(Severity::Warning, check, &subject, format!("serves boot, degraded: {why}"))
                        .why("it serves what it has, but cannot follow the store or write events to it")
                        .fix("check etcd's quorum (kindling doctor --store ...) and the replica's log"),
                });
            }
            Ok(r) => out.push(
                finding(Severity::Error, check, &subject, format!("/healthz answers HTTP {}", r.status))
                    .fix("is this kindling serve --store? look at its log"),
            ),
            Err(e) => out.push(
                finding(Severity::Error, check, &subject, format!("no answer: {e}"))
                    .why("the load balancer sends no machine to it: one replica fewer stands between a boot storm and a failed boot")
                    .fix(format!("start kindling serve --store ... --http {addr} on {replica}")),
            ),
        }
        if let Ok(r) = client.get(&target, "/boot.ipxe")
            && r.status == 200
        {
            let script = String::from_utf8_lossy(&r.body).into_owned();
            if let Some(revision) = revision_of(&script) {
                served.push((subject, revision));
            }
        }
    }
    let newest = served.iter().map(|(_, r)| *r).max();
    let current = req
        .store
        .as_ref()
        .and_then(|store| store_checks(req, store, &mut out));
    if let Some(want) = current.or(newest) {
        for (subject, revision) in &served {
            if *revision != want {
                out.push(
                    finding(
                        Severity::Warning,
                        "provisioning.replica-revision",
                        subject,
                        format!("serves revision {revision}, not {want}"),
                    )
                    .why("a replica takes a new revision up within about a second; one that stays behind cannot follow the store")
                    .fix("look at the replica's log (following the store)"),
                );
            }
        }
    }
    out
}

/// The revision a kindling `boot.ipxe` chains with (`rev=`).
fn revision_of(script: &str) -> Option<u64> {
    let start = script.find("rev=")? + 4;
    let digits: String = script[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// etcd's members, and the store's current revision (returned).
fn store_checks(
    req: &Request,
    store: &kindling_store::Store,
    out: &mut Vec<Finding>,
) -> Option<u64> {
    for endpoint in store.etcd().endpoints() {
        let check = "provisioning.store-member";
        out.push(match store.etcd().health(endpoint) {
            Ok(()) => finding(Severity::Ok, check, endpoint, "healthy".into()),
            Err(e) => finding(Severity::Error, check, endpoint, e.to_string())
                .why("with fewer than a quorum of members, the replicas serve boot from what they have but can take no new revision and keep events locally"),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let wait = req.timeouts.exchange * 2;
    let current = runtime.block_on(async { tokio::time::timeout(wait, store.current()).await });
    let check = "provisioning.store";
    let subject = store.describe();
    match current {
        Ok(Ok(Some((revision, _)))) => {
            out.push(finding(
                Severity::Ok,
                check,
                &subject,
                format!(
                    "revision {}: {} files, pushed {} from {}",
                    revision.number, revision.files, revision.pushed_at, revision.pushed_from
                ),
            ));
            Some(revision.number)
        }
        Ok(Ok(None)) => {
            out.push(
                finding(
                    Severity::Error,
                    check,
                    &subject,
                    "nothing has been pushed".into(),
                )
                .fix("kindling store push --dir <asset directory> --store ..."),
            );
            None
        }
        Ok(Err(e)) => {
            out.push(finding(Severity::Error, check, &subject, e.to_string()));
            None
        }
        Err(_) => {
            out.push(finding(
                Severity::Error,
                check,
                &subject,
                format!("no answer within {}s", wait.as_secs()),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_is_read_from_the_chain_line() {
        assert_eq!(
            revision_of("#!ipxe\nchain http://a/ipxe?mac=${mac:hexhyp}&rev=12 ||\n"),
            Some(12)
        );
        assert_eq!(revision_of("#!ipxe\nchain http://a/ipxe?mac=x ||\n"), None);
    }
}
