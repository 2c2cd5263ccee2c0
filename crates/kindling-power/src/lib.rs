//! Machines' power through their BMCs, as inventory.yaml describes them (`bmc:`): the power
//! state, on, off, cycle, and a one-time network boot, for many machines at once with a bound
//! on how many are asked together, over Redfish (see [`redfish`]) or IPMI (see [`ipmi`]).
//!
//! Every BMC call has a timeout and is tried again after a failure to connect or a 5xx answer;
//! a refusal (a wrong password, an action the BMC does not offer) is said at once, in words. No
//! password is ever in an error or a log line.

pub mod credentials;
pub mod ipmi;
pub mod redfish;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kindling_config::{BmcAddress, Machine};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    On,
    Off,
    Cycle,
}

/// A system's power, as its BMC says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    /// PoweringOn, PoweringOff, or what else a BMC says.
    Other(String),
}

impl PowerState {
    fn of(text: Option<&str>) -> PowerState {
        match text {
            Some("On") => PowerState::On,
            Some("Off") => PowerState::Off,
            Some(other) => PowerState::Other(other.to_string()),
            None => PowerState::Other("unknown".into()),
        }
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PowerState::On => f.write_str("on"),
            PowerState::Off => f.write_str("off"),
            PowerState::Other(s) => f.write_str(s),
        }
    }
}

/// Why a machine's BMC did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("{name} has no bmc in inventory.yaml; add bmc: {{address: ..., credentials: ...}}")]
    NoBmc { name: String },
    #[error("the BMC credentials file {}: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },
    #[error("{address}: {reason}")]
    Address { address: String, reason: String },
    #[error("{bmc}: {what}: {reason}")]
    Bmc {
        bmc: String,
        what: String,
        reason: String,
        /// Whether asking again may work (no connection, a 5xx).
        retry: bool,
    },
}

/// What was asked of every machine.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub action: Action,
    /// Boot from the network once, set before the power action.
    pub pxe_once: bool,
    /// Machines asked at the same time.
    pub concurrency: usize,
    /// How long one BMC call may take.
    pub timeout: Duration,
    /// How many times a call that may work again is tried in all.
    pub tries: u32,
}

impl Default for Request {
    fn default() -> Request {
        Request {
            action: Action::Status,
            pxe_once: false,
            concurrency: 32,
            timeout: Duration::from_secs(10),
            tries: 3,
        }
    }
}

/// What a machine's BMC did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Its power before the action (for `status`, the answer).
    pub state: PowerState,
    /// The reset it was asked for (`On`, `ForceOff`, ...), if any.
    pub reset: Option<&'static str>,
    pub pxe_once: bool,
}

/// Does `request` on one machine, whose description is in the asset directory `dir`.
pub async fn one(dir: &Path, machine: &Machine, request: &Request) -> Result<Done, PowerError> {
    let bmc = machine.bmc.as_ref().ok_or_else(|| PowerError::NoBmc {
        name: machine.name.clone(),
    })?;
    let credentials = credentials::Credentials::load(&credentials::path_of(dir, &bmc.credentials))?;
    let system_url = match &bmc.address {
        BmcAddress::Redfish { system_url } => system_url,
        BmcAddress::Ipmi { host, port } => {
            return tried(request, || over_ipmi(host, *port, &credentials, request)).await;
        }
    };
    let timeouts = kindling_http::Timeouts {
        connect: request.timeout,
        exchange: request.timeout,
    };
    let system = redfish::System::new(system_url, &credentials, bmc.insecure, timeouts)?;
    // Read once: its state, and the resets it offers.
    let read = tried(request, || system.read()).await?;
    if request.pxe_once {
        tried(request, || system.pxe_once()).await?;
    }
    let reset = match request.action {
        Action::Status => None,
        action => Some(tried(request, || system.act(&read, action)).await?),
    };
    Ok(Done {
        state: redfish::System::state(&read),
        reset,
        pxe_once: request.pxe_once,
    })
}

/// [`one`] over IPMI: a session for the whole of it, closed at the end.
async fn over_ipmi(
    host: &str,
    port: u16,
    credentials: &credentials::Credentials,
    request: &Request,
) -> Result<Done, PowerError> {
    let mut session = ipmi::Session::open(host, port, credentials, request.timeout / 5).await?;
    let done = async {
        let state = session.state().await?;
        if request.pxe_once {
            session.pxe_once().await?;
        }
        let reset = match request.action {
            Action::Status => None,
            action => Some(session.act(action, &state).await?),
        };
        Ok(Done {
            state,
            reset,
            pxe_once: request.pxe_once,
        })
    }
    .await;
    session.close().await;
    done
}

/// Runs `call` until it succeeds, fails for good, or has been tried `request.tries` times.
async fn tried<T, F, Fut>(request: &Request, mut call: F) -> Result<T, PowerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PowerError>>,
{
    let mut pause = Duration::from_millis(500);
    for _ in 1..request.tries.max(1) {
        match call().await {
            Err(PowerError::Bmc { retry: true, .. }) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    call().await
}

/// Does `request` on every machine of `machines`, at most `request.concurrency` at a time;
/// `progress(done, total)` after each. The results are in the machines' order.
pub async fn many(
    dir: &Path,
    machines: &[Machine],
    request: &Request,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<Result<Done, PowerError>> {
    use std::sync::Arc;
    let limit = Arc::new(tokio::sync::Semaphore::new(request.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for (i, machine) in machines.iter().enumerate() {
        let (limit, dir, machine, request) =
            (limit.clone(), dir.to_path_buf(), machine.clone(), *request);
        running.spawn(async move {
            let _slot = limit.acquire_owned().await;
            (i, one(&dir, &machine, &request).await)
        });
    }
    let mut results: Vec<Option<Result<Done, PowerError>>> =
        machines.iter().map(|_| None).collect();
    let mut done = 0;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((i, result)) => results[i] = Some(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
        done += 1;
        progress(done, machines.len());
    }
    results
        .into_iter()
        .map(|r| r.expect("every machine answered"))
        .collect()
}
