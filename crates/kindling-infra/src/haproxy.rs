//! The load balancer: HAProxy in TCP mode in front of the API (6443), the machine config server
//! (22623) and the ingress (80, 443).
//!
//! What a hand-written UPI runbook got wrong, and how it cannot happen here:
//! - 22623 is bound to the `api-int` VIP only, never to the external `api` VIP or the ingress
//!   VIP: the machine configs it serves are for the machines. When `apiIntVIP` is the same
//!   address as `apiVIP` (kindling's default) or `ingressVIP`, there is no internal-only address
//!   to bind, so 22623 stays on that address but accepts connections only from the machine
//!   network; the file says so. (Refusing instead would refuse kindling's own default.)
//! - the bootstrap machine is in the backends during [`Phase::Install`] only; `--phase
//!   bootstrap-removed` writes it out;
//! - backends are addresses, so HAProxy starts without DNS (it resolves names at start-up,
//!   before the zones it fronts may be served).
//!
//! The 22623 backend is the provisioning host (`kindling serve`) in kindling mode, and the
//! bootstrap machine and masters in OpenShift companion mode, where openshift-install's own
//! machine config server runs on them ([`ConfigMaker`]).

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use kindling_config::{ClusterDescription, Role};

use crate::site::{self, InfraError};
use crate::{Choices, ConfigMaker, Phase};

/// `infra/haproxy.cfg`, relative to the asset directory.
pub const HAPROXY_CFG: &str = "infra/haproxy.cfg";

/// The API port.
pub const API_PORT: u16 = 6443;
/// The machine config server's port.
pub const MCS_PORT: u16 = 22623;
/// Where HAProxy's statistics page listens: on the load balancer itself only.
pub const STATS_ADDR: &str = "127.0.0.1:1936";

/// One backend server: a machine or the provisioning host, by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: IpAddr,
}

/// The boot server's front end, when several replicas serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioning {
    /// `serverURL`'s address and port: what the machines ask.
    pub bind: IpAddr,
    pub port: u16,
    /// The replicas, each serving on the same port.
    pub replicas: Vec<Server>,
}

/// What the load balancer does, before it is text; `kindling doctor` can check each part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// The addresses 6443 is bound to: the api and api-int VIPs.
    pub api_binds: Vec<IpAddr>,
    /// The address 22623 is bound to: the api-int VIP.
    pub mcs_bind: IpAddr,
    /// When `mcs_bind` is also the api or ingress VIP: the only sources 22623 accepts.
    pub mcs_sources: Option<Vec<Ipv4Net>>,
    /// The address 80 and 443 are bound to: the ingress VIP.
    pub ingress_bind: IpAddr,
    /// 6443: the masters, and the bootstrap machine during the install.
    pub api: Vec<Server>,
    /// 22623: the provisioning host (kindling), or the bootstrap machine and masters
    /// (OpenShift companion mode).
    pub machine_config: Vec<Server>,
    /// 22623's connections (health checks too) start with a PROXY protocol v2 header.
    pub mcs_proxy_protocol: bool,
    /// Network boot in front of `kindling serve --store` replicas (`provisioning.replicas`).
    pub provisioning: Option<Provisioning>,
    /// 80 and 443: infra machines if any, else workers, else masters.
    pub ingress: Vec<Server>,
    /// The role of the ingress backends.
    pub ingress_role: Role,
}

fn servers<'a>(d: &'a ClusterDescription, roles: &'a [Role]) -> impl Iterator<Item = Server> + 'a {
    d.inventory
        .machines
        .iter()
        .filter(|m| roles.contains(&m.role))
        .map(|m| Server {
            name: m.name.clone(),
            address: m.ip,
        })
}

/// Decides binds and backends for `choices`.
pub fn plan(
    d: &ClusterDescription,
    choices: Choices,
    maker: ConfigMaker,
) -> Result<LoadBalancer, InfraError> {
    let phase = choices.phase;
    if choices.mcs_proxy_protocol && maker == ConfigMaker::OpenShiftInstall {
        return Err(InfraError::ProxyProtocolInCompanionMode);
    }
    let lb = &d.inventory.load_balancer;
    let control_plane: &[Role] = match phase {
        Phase::Install => &[Role::Bootstrap, Role::Master],
        Phase::BootstrapRemoved => &[Role::Master],
    };
    let mut api_binds = vec![lb.api_vip];
    if lb.api_int_vip != lb.api_vip {
        api_binds.push(lb.api_int_vip);
    }
    let shared = lb.api_int_vip == lb.api_vip || lb.api_int_vip == lb.ingress_vip;
    let replicas: Vec<Server> = d
        .inventory
        .provisioning
        .replicas
        .iter()
        .enumerate()
        .map(|(i, address)| Server {
            name: format!("replica{i}"),
            address: *address,
        })
        .collect();
    let provisioning = (maker == ConfigMaker::Kindling && !replicas.is_empty())
        .then(|| {
            Ok::<_, InfraError>(Provisioning {
                bind: IpAddr::V4(site::provisioning_host(d)?),
                port: site::server_port(d),
                replicas: replicas.clone(),
            })
        })
        .transpose()?;
    let machine_config = match maker {
        ConfigMaker::Kindling if !replicas.is_empty() => replicas,
        ConfigMaker::Kindling => vec![Server {
            name: "provisioning".into(),
            address: IpAddr::V4(site::provisioning_host(d)?),
        }],
        ConfigMaker::OpenShiftInstall => servers(d, control_plane).collect(),
    };
    let ingress_role = [Role::Infra, Role::Worker]
        .into_iter()
        .find(|r| d.inventory.with_role(*r).next().is_some())
        .unwrap_or(Role::Master);
    Ok(LoadBalancer {
        api_binds,
        mcs_bind: lb.api_int_vip,
        mcs_sources: shared.then(|| site::machine_networks(d)),
        ingress_bind: lb.ingress_vip,
        api: servers(d, control_plane).collect(),
        machine_config,
        mcs_proxy_protocol: choices.mcs_proxy_protocol,
        provisioning,
        ingress: servers(d, &[ingress_role]).collect(),
        ingress_role,
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Bootstrap => "bootstrap",
        Role::Master => "master",
        Role::Worker => "worker",
        Role::Infra => "infra",
    }
}

fn bind(out: &mut String, address: IpAddr, port: u16) {
    let _ = match address {
        IpAddr::V4(ip) => writeln!(out, "    bind {ip}:{port}"),
        IpAddr::V6(ip) => writeln!(out, "    bind [{ip}]:{port}"),
    };
}

fn server_lines(out: &mut String, servers: &[Server], port: u16, options: &str) {
    for s in servers {
        let _ = match s.address {
            IpAddr::V4(ip) => writeln!(out, "    server {} {ip}:{port}{options}", s.name),
            IpAddr::V6(ip) => writeln!(out, "    server {} [{ip}]:{port}{options}", s.name),
        };
    }
}

/// `haproxy.cfg` for `plan`.
pub fn render(
    d: &ClusterDescription,
    plan: &LoadBalancer,
    phase: Phase,
    maker: ConfigMaker,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HAProxy for the {cluster} cluster, written by `kindling create infra --phase {phase}`.\n\
         # Backends are addresses, so HAProxy starts before DNS answers. The VIPs must be\n\
         # addresses of this host (or allow binding others: sysctl net.ipv4.ip_nonlocal_bind=1).",
        cluster = d.cluster_domain(),
        phase = phase.as_str(),
    );
    match phase {
        Phase::Install => {
            let _ = writeln!(
                out,
                "# Phase install: the bootstrap machine is a backend. When `kindling wait-for\n\
                 # bootstrap-complete` says it may go, run `kindling create infra --phase\n\
                 # bootstrap-removed` and reload HAProxy."
            );
        }
        Phase::BootstrapRemoved => {
            let _ = writeln!(
                out,
                "# Phase bootstrap-removed: the bootstrap machine is in no backend."
            );
        }
    }
    let _ = writeln!(
        out,
        "\nglobal\n    log /dev/log local0\n\
         \x20   # No maxconn: HAProxy then sizes it to the file descriptors the host allows; a\n\
         \x20   # fixed one larger than the host's limit keeps HAProxy from starting.\n\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    option dontlognull\n    retries 3\n\
         \x20   timeout connect 10s\n    timeout client 1m\n    timeout server 1m\n\
         \x20   # API watches and log streams stay open for long without traffic.\n\
         \x20   timeout tunnel 1h\n    timeout queue 1m\n    timeout check 10s\n\n\
         listen stats\n    bind {STATS_ADDR}\n    mode http\n    stats enable\n    stats uri /\n    stats refresh 10s"
    );

    let _ = writeln!(out, "\n# The API: api and api-int.");
    let _ = writeln!(out, "frontend api\n");
    out.pop();
    for address in &plan.api_binds {
        bind(&mut out, *address, API_PORT);
    }
    let _ = writeln!(out, "    default_backend api\n");
    let _ = writeln!(
        out,
        "backend api\n    balance roundrobin\n    option httpchk GET /readyz HTTP/1.0\n    http-check expect status 200\n\
         \x20   default-server check check-ssl verify none inter 5s fall 3 rise 2"
    );
    server_lines(&mut out, &plan.api, API_PORT, "");

    let who = match maker {
        ConfigMaker::Kindling => {
            "the provisioning host, where `kindling serve` runs the machine config server"
        }
        ConfigMaker::OpenShiftInstall => {
            "OpenShift companion mode: openshift-install's machine config server runs on the bootstrap machine and the masters"
        }
    };
    let _ = writeln!(
        out,
        "\n# The machine config server, for the machines only: api-int, never the external api VIP\n\
         # or the ingress VIP. Backend: {who}."
    );
    let _ = writeln!(out, "frontend machine-config\n");
    out.pop();
    bind(&mut out, plan.mcs_bind, MCS_PORT);
    if let Some(sources) = &plan.mcs_sources {
        let _ = writeln!(
            out,
            "    # apiIntVIP is also the api or ingress VIP, so outside clients reach this address:\n\
             \x20   # 22623 accepts connections from the machine network only. Give api-int its own\n\
             \x20   # VIP (inventory.yaml loadBalancer.apiIntVIP) to keep 22623 off that address."
        );
        let list: Vec<String> = sources.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "    tcp-request connection reject unless {{ src {} }}",
            list.join(" ")
        );
    }
    let _ = writeln!(out, "    default_backend machine-config\n");
    let _ = writeln!(
        out,
        "backend machine-config\n    balance roundrobin\n    option httpchk GET /healthz HTTP/1.0\n    http-check expect status 200\n\
         \x20   default-server check check-ssl verify none inter 5s fall 3 rise 2"
    );
    let options = if plan.mcs_proxy_protocol {
        let _ = writeln!(
            out,
            "    # The client's address goes to kindling serve in a PROXY protocol v2 header, health\n\
             \x20   # checks too: run it with --mcs-auth=source-ip --proxy-from <this host's address>."
        );
        " send-proxy-v2 check-send-proxy"
    } else {
        ""
    };
    server_lines(&mut out, &plan.machine_config, MCS_PORT, options);

    if let Some(front) = &plan.provisioning {
        let _ = writeln!(
            out,
            "\n# Network boot (serverURL), in front of the `kindling serve --store` replicas. A replica\n\
             # that dies or stops answering /healthz is left out within seconds, and a request it\n\
             # dropped goes to another: boot requests are GETs, and agents' reports carry an id of\n\
             # their own, so sending one again is safe. /healthz says `degraded` (still 200) while\n\
             # a replica serves without its store: it is kept, since it still serves boot.\n\
             frontend provisioning\n    mode http\n    option httplog"
        );
        bind(&mut out, front.bind, front.port);
        let _ = writeln!(out, "    default_backend provisioning\n");
        let _ = writeln!(
            out,
            "backend provisioning\n    mode http\n    balance roundrobin\n\
             \x20   option http-buffer-request\n\
             \x20   retry-on conn-failure empty-response response-timeout 502 503 504\n\
             \x20   option redispatch 1\n\
             \x20   option httpchk GET /healthz\n    http-check expect status 200\n\
             \x20   default-server check inter 1s fall 2 rise 2"
        );
        server_lines(&mut out, &front.replicas, front.port, "");
    }

    let role = role_name(plan.ingress_role);
    let why = match plan.ingress_role {
        Role::Infra => "the infra machines",
        Role::Worker => "the workers (there are no infra machines)",
        _ => "the masters (no workers or infra machines: a compact cluster schedules on masters)",
    };
    for (name, port) in [("ingress-http", 80), ("ingress-https", 443)] {
        let _ = writeln!(out, "\n# Ingress (*.apps) on {port}: {why}.");
        let _ = writeln!(out, "frontend {name}\n");
        out.pop();
        bind(&mut out, plan.ingress_bind, port);
        let _ = writeln!(out, "    default_backend {name}\n");
        let _ = writeln!(
            out,
            "backend {name}\n    # The same client stays on the same {role} (sessions).\n    balance source\n\
             \x20   default-server check inter 5s fall 3 rise 2"
        );
        server_lines(&mut out, &plan.ingress, port, "");
    }
    out
}

/// The `bind` lines of a frontend in rendered text, for tests and checks.
pub fn binds_of<'a>(cfg: &'a str, frontend: &str) -> Vec<&'a str> {
    let header = format!("frontend {frontend}");
    cfg.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().strip_prefix("bind "))
        .collect()
}

/// The backend servers in rendered text, as `name address:port`.
pub fn servers_of<'a>(cfg: &'a str, backend: &str) -> Vec<&'a str> {
    let header = format!("backend {backend}");
    cfg.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().strip_prefix("server "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{demo, demo_with, upi};

    fn cfg(d: &ClusterDescription, phase: Phase, maker: ConfigMaker) -> String {
        let choices = Choices {
            phase,
            ..Choices::default()
        };
        render(d, &plan(d, choices, maker).unwrap(), phase, maker)
    }

    #[test]
    fn the_proxy_protocol_goes_only_to_kindlings_machine_config_server() {
        let d = demo();
        let choices = Choices {
            mcs_proxy_protocol: true,
            ..Choices::default()
        };
        let plan = plan(&d, choices, ConfigMaker::Kindling).unwrap();
        let text = render(&d, &plan, Phase::Install, ConfigMaker::Kindling);
        let with_header: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("send-proxy-v2 check-send-proxy"))
            .collect();
        assert_eq!(
            with_header,
            ["    server provisioning 192.168.126.2:22623 send-proxy-v2 check-send-proxy"]
        );
        // openshift-install's machine config server reads no PROXY header.
        assert_eq!(
            super::plan(&d, choices, ConfigMaker::OpenShiftInstall),
            Err(InfraError::ProxyProtocolInCompanionMode)
        );
    }

    #[test]
    fn the_machine_config_server_is_bound_to_api_int_only() {
        // UPI: api VIP = ingress VIP = .111, api-int .110.
        let text = cfg(&upi(), Phase::Install, ConfigMaker::Kindling);
        assert_eq!(binds_of(&text, "machine-config"), ["172.16.0.110:22623"]);
        assert_eq!(
            binds_of(&text, "api"),
            ["172.16.0.111:6443", "172.16.0.110:6443"]
        );
        assert_eq!(binds_of(&text, "ingress-https"), ["172.16.0.111:443"]);
        for line in text.lines().filter(|l| l.contains("22623")) {
            assert!(!line.contains("172.16.0.111"), "{line}");
        }
        assert!(!text.contains("tcp-request"), "{text}");
    }

    #[test]
    fn a_shared_api_int_vip_lets_only_the_machine_network_reach_22623() {
        // The demo: api-int VIP = api VIP.
        let text = cfg(&demo(), Phase::Install, ConfigMaker::Kindling);
        assert_eq!(binds_of(&text, "machine-config"), ["192.168.126.10:22623"]);
        assert!(
            text.contains("tcp-request connection reject unless { src 192.168.126.0/24 }"),
            "{text}"
        );
        // Shared with the ingress VIP instead.
        let d = demo_with(
            |ic| ic.to_string(),
            |inv| inv.replace("apiIntVIP: 192.168.126.10", "apiIntVIP: 192.168.126.11"),
        );
        let text = cfg(&d, Phase::Install, ConfigMaker::Kindling);
        assert_eq!(binds_of(&text, "machine-config"), ["192.168.126.11:22623"]);
        assert!(
            text.contains("tcp-request connection reject unless"),
            "{text}"
        );
    }

    #[test]
    fn the_bootstrap_machine_is_a_backend_during_the_install_only() {
        let d = upi();
        let install = cfg(&d, Phase::Install, ConfigMaker::OpenShiftInstall);
        assert_eq!(servers_of(&install, "api")[0], "bs 172.16.0.11:6443");
        assert_eq!(
            servers_of(&install, "machine-config"),
            [
                "bs 172.16.0.11:22623",
                "m1 172.16.0.21:22623",
                "m2 172.16.0.22:22623",
                "m3 172.16.0.23:22623"
            ]
        );
        let removed = cfg(&d, Phase::BootstrapRemoved, ConfigMaker::OpenShiftInstall);
        assert!(!removed.contains("172.16.0.11:"), "{removed}");
        assert_eq!(servers_of(&removed, "api").len(), 3);
        assert_eq!(servers_of(&removed, "machine-config").len(), 3);
    }

    #[test]
    fn kindling_mode_sends_22623_to_the_provisioning_host() {
        let text = cfg(&upi(), Phase::Install, ConfigMaker::Kindling);
        assert_eq!(
            servers_of(&text, "machine-config"),
            ["provisioning 172.16.0.101:22623"]
        );
        assert!(text.contains("option httpchk GET /healthz"), "{text}");
        assert!(text.contains("option httpchk GET /readyz"), "{text}");
    }

    #[test]
    fn replicas_serve_boot_and_the_machine_config_server_behind_server_url() {
        let d = demo_with(
            |ic| ic.to_string(),
            |inv| {
                inv.replace(
                    "  os: fcos\n",
                    "  os: fcos\n  replicas: [192.168.126.3, 192.168.126.4]\n",
                )
            },
        );
        let text = cfg(&d, Phase::Install, ConfigMaker::Kindling);
        assert_eq!(binds_of(&text, "provisioning"), ["192.168.126.2:8080"]);
        assert_eq!(
            servers_of(&text, "provisioning"),
            ["replica0 192.168.126.3:8080", "replica1 192.168.126.4:8080"]
        );
        assert_eq!(
            servers_of(&text, "machine-config"),
            [
                "replica0 192.168.126.3:22623",
                "replica1 192.168.126.4:22623"
            ]
        );
        assert!(text.contains("retry-on conn-failure"), "{text}");
        // One provisioning host: no boot front end.
        let text = cfg(&demo(), Phase::Install, ConfigMaker::Kindling);
        assert!(!text.contains("frontend provisioning"), "{text}");
    }

    #[test]
    fn ingress_goes_to_infra_else_workers_else_masters() {
        let text = cfg(&upi(), Phase::Install, ConfigMaker::Kindling);
        assert_eq!(servers_of(&text, "ingress-http"), ["i1 172.16.0.41:80"]);
        let text = cfg(&demo(), Phase::Install, ConfigMaker::Kindling);
        assert_eq!(servers_of(&text, "ingress-https").len(), 3);
        assert!(servers_of(&text, "ingress-https")[0].starts_with("worker0 "));
        let compact = demo_with(
            |ic| ic.replace("replicas: 3\nnetworking", "replicas: 0\nnetworking"),
            |inv| inv.split("  - name: worker0").next().unwrap().to_string(),
        );
        let text = cfg(&compact, Phase::Install, ConfigMaker::Kindling);
        assert_eq!(servers_of(&text, "ingress-http").len(), 3);
        assert!(servers_of(&text, "ingress-http")[0].starts_with("master0 "));
        assert!(!text.contains("bootstrap 192.168.126.100:80"), "{text}");
    }
}
