//! A BMC over IPMI v2.0 on the LAN (RMCP+, what `ipmitool -I lanplus` speaks): a session with
//! cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96 integrity, AES-CBC-128 confidentiality), and the
//! chassis commands kindling needs: power status, on, off, cycle, and a one-time network boot.
//! Written here because no IPMI crate is sound for this (README, "Power"): suite 3 is the only
//! one offered, and a BMC that will not speak it is refused, never asked without encryption.
//!
//! Message layouts follow the IPMI v2.0 specification (sections 13.6-13.32 for RMCP+ and its
//! session setup; 28.2, 28.3, 28.12 and 28.13 for the chassis commands).

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::cipher::{
    AES_128, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use tokio::net::UdpSocket;

use crate::credentials::Credentials;
use crate::{Action, PowerError, PowerState};

const RMCP: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
const AUTH_RMCP_PLUS: u8 = 0x06;
const OPEN_SESSION: u8 = 0x10;
const RAKP1: u8 = 0x12;
const RAKP3: u8 = 0x14;
/// Payload type IPMI, encrypted and authenticated.
const SECURED_IPMI: u8 = 0xc0;
/// The administrator role, with the user looked up by name only.
const ROLE: u8 = 0x14;

const NETFN_CHASSIS: u8 = 0x00;
const NETFN_APP: u8 = 0x06;

/// An open session with one BMC.
pub struct Session {
    socket: UdpSocket,
    bmc: String,
    timeout: Duration,
    /// The BMC's session id, which our messages carry.
    sid_c: [u8; 4],
    seq: u32,
    rq_seq: u8,
    k1: hmac::Key,
    aes: [u8; 16],
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Without randomness nothing here is secure; aws-lc's never fails in practice.
    aws_lc_rs::rand::fill(&mut bytes).expect("randomness");
    bytes
}

/// Two's complement checksum of `bytes` (IPMI messages carry two).
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

impl Session {
    fn failed(&self, what: &str, reason: impl Into<String>, retry: bool) -> PowerError {
        PowerError::Bmc {
            bmc: self.bmc.clone(),
            what: what.to_string(),
            reason: reason.into(),
            retry,
        }
    }

    /// Opens a session with the BMC at `host:port` as `credentials`' user.
    pub async fn open(
        host: &str,
        port: u16,
        credentials: &Credentials,
        timeout: Duration,
    ) -> Result<Session, PowerError> {
        let bmc = format!("ipmi://{host}:{port}");
        let fail = |what: &str, reason: String, retry: bool| PowerError::Bmc {
            bmc: bmc.clone(),
            what: what.to_string(),
            reason,
            retry,
        };
        let addr: SocketAddr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| fail("finding the BMC", format!("{host} does not resolve"), true))?;
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("an address")
        } else {
            "[::]:0".parse().expect("an address")
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| fail("opening a UDP socket", e.to_string(), false))?;
        socket
            .connect(addr)
            .await
            .map_err(|e| fail("reaching the BMC", e.to_string(), true))?;
        let user = credentials.username.as_bytes();
        if user.len() > 16 {
            return Err(fail(
                "opening a session",
                "an IPMI user name is at most 16 bytes".into(),
                false,
            ));
        }
        let mut kuid = [0u8; 20];
        let password = credentials.password.as_bytes();
        if password.len() > 20 {
            return Err(fail(
                "opening a session",
                "an IPMI password is at most 20 bytes".into(),
                false,
            ));
        }
        kuid[..password.len()].copy_from_slice(password);

        let mut session = Session {
            socket,
            bmc: bmc.clone(),
            timeout,
            sid_c: [0; 4],
            seq: 0,
            rq_seq: 0,
            k1: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[]),
            aes: [0; 16],
        };

        // Open Session: cipher suite 3 and nothing else.
        let sid_m: [u8; 4] = random();
        let mut open = vec![0x00, 0x04, 0x00, 0x00];
        open.extend_from_slice(&sid_m);
        open.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
        open.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
        open.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
        let answer = session.exchange_plain(OPEN_SESSION, &open).await?;
        if answer.len() < 36 || answer[1] != 0 {
            return Err(session.refusal("opening a session", answer.get(1).copied()));
        }
        let sid_c: [u8; 4] = answer[8..12].try_into().expect("4 bytes");

        // RAKP 1 and 2: the BMC proves it knows the password.
        let rm: [u8; 16] = random();
        let mut rakp1 = vec![0x00, 0, 0, 0];
        rakp1.extend_from_slice(&sid_c);
        rakp1.extend_from_slice(&rm);
        rakp1.extend_from_slice(&[ROLE, 0, 0, user.len() as u8]);
        rakp1.extend_from_slice(user);
        let answer = session.exchange_plain(RAKP1, &rakp1).await?;
        if answer.len() < 60 || answer[1] != 0 {
            return Err(session.refusal("authenticating (RAKP 2)", answer.get(1).copied()));
        }
        let rc = &answer[8..24];
        let guid_c = &answer[24..40];
        let said = &answer[40..60];
        let ulen = [user.len() as u8];
        let expected = hmac_sha1(
            &kuid,
            &[&sid_m, &sid_c, &rm, rc, guid_c, &[ROLE], &ulen, user],
        );
        if !constant_eq(expected.as_ref(), said) {
            return Err(fail(
                "authenticating",
                "the BMC refused the user and password of its credentials file".into(),
                false,
            ));
        }
        let sik = hmac_sha1(&kuid, &[&rm, rc, &[ROLE], &ulen, user]);

        // RAKP 3 and 4: we prove it; the BMC confirms the session key.
        let mut rakp3 = vec![0x00, 0x00, 0, 0];
        rakp3.extend_from_slice(&sid_c);
        rakp3.extend_from_slice(hmac_sha1(&kuid, &[rc, &sid_m, &[ROLE], &ulen, user]).as_ref());
        let answer = session.exchange_plain(RAKP3, &rakp3).await?;
        if answer.len() < 20 || answer[1] != 0 {
            return Err(session.refusal("authenticating (RAKP 4)", answer.get(1).copied()));
        }
        let icv = hmac_sha1(sik.as_ref(), &[&rm, &sid_c, guid_c]);
        if !constant_eq(&icv.as_ref()[..12], &answer[8..20]) {
            return Err(fail(
                "authenticating",
                "the BMC's session key does not match ours".into(),
                false,
            ));
        }
        let k1 = hmac_sha1(sik.as_ref(), &[&[0x01; 20]]);
        let k2 = hmac_sha1(sik.as_ref(), &[&[0x02; 20]]);
        session.k1 = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, k1.as_ref());
        session.aes.copy_from_slice(&k2.as_ref()[..16]);
        session.sid_c = sid_c;
        // As administrator, for the chassis commands.
        session.command(NETFN_APP, 0x3b, &[0x04]).await?;
        Ok(session)
    }

    fn refusal(&self, what: &str, status: Option<u8>) -> PowerError {
        let reason = match status {
            // RMCP+ status codes (IPMI v2.0, table 13-15).
            Some(0x0d) => "the BMC does not know the user of its credentials file".to_string(),
            Some(0x11) => {
                "the BMC does not offer cipher suite 3 (HMAC-SHA1, AES-CBC-128)".to_string()
            }
            Some(0x12) => "the BMC refused the role administrator for this user".to_string(),
            Some(code) => format!("the BMC answered status {code:#04x}"),
            None => "the BMC's answer is too short".to_string(),
        };
        self.failed(what, reason, false)
    }

    /// Sends a session-setup message and returns its answer's payload.
    async fn exchange_plain(&self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, PowerError> {
        let mut packet = RMCP.to_vec();
        packet.extend_from_slice(&[AUTH_RMCP_PLUS, kind, 0, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        packet.extend_from_slice(payload);
        let answer = self.round_trip(&packet, "setting up a session").await?;
        // RMCP (4), auth type, payload type, session id (4), sequence (4), length (2).
        if answer.len() < 16 || answer[5] != kind + 1 {
            return Err(self.failed(
                "setting up a session",
                "the answer is not the one asked for",
                false,
            ));
        }
        let length = usize::from(u16::from_le_bytes([answer[14], answer[15]]));
        answer
            .get(16..16 + length)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| self.failed("setting up a session", "a truncated answer", false))
    }

    /// Sends `packet` and waits for an answer, sending it again after a timeout (UDP).
    async fn round_trip(&self, packet: &[u8], what: &str) -> Result<Vec<u8>, PowerError> {
        let mut buffer = vec![0u8; 1024];
        for _ in 0..3 {
            self.socket
                .send(packet)
                .await
                .map_err(|e| self.failed(what, e.to_string(), true))?;
            match tokio::time::timeout(self.timeout, self.socket.recv(&mut buffer)).await {
                Ok(Ok(n)) => return Ok(buffer[..n].to_vec()),
                Ok(Err(e)) => return Err(self.failed(what, e.to_string(), true)),
                Err(_) => continue,
            }
        }
        Err(self.failed(
            what,
            format!("no answer in 3 tries of {} s", self.timeout.as_secs()),
            true,
        ))
    }

    /// Sends an IPMI command in the session and returns its answer's data (after the
    /// completion code, which must be 0).
    async fn command(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, PowerError> {
        let what = format!("command {netfn:#04x}/{cmd:#04x}");
        self.seq = self.seq.wrapping_add(1).max(1);
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let mut message = vec![0x20, netfn << 2];
        message.push(checksum(&message));
        let body_start = message.len();
        message.extend_from_slice(&[0x81, self.rq_seq << 2, cmd]);
        message.extend_from_slice(data);
        message.push(checksum(&message[body_start..]));

        // Confidentiality: IV, then AES-CBC of the message with its pad (1, 2, ... n, then n).
        let pad = (16 - (message.len() + 1) % 16) % 16;
        let mut plain = message;
        plain.extend((1..=pad as u8).collect::<Vec<u8>>());
        plain.push(pad as u8);
        let iv: [u8; 16] = random();
        let key = EncryptingKey::cbc(
            UnboundCipherKey::new(&AES_128, &self.aes)
                .map_err(|_| self.failed(&what, "AES", false))?,
        )
        .map_err(|_| self.failed(&what, "AES", false))?;
        key.less_safe_encrypt(&mut plain, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| self.failed(&what, "AES", false))?;
        let mut payload = iv.to_vec();
        payload.extend_from_slice(&plain);

        let mut session = vec![AUTH_RMCP_PLUS, SECURED_IPMI];
        session.extend_from_slice(&self.sid_c);
        session.extend_from_slice(&self.seq.to_le_bytes());
        session.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        session.extend_from_slice(&payload);
        // Integrity: pad to a multiple of 4 with the pad length and next header, then the MAC.
        let integrity_pad = (4 - (session.len() + 2) % 4) % 4;
        session.extend(std::iter::repeat_n(0xff, integrity_pad));
        session.extend_from_slice(&[integrity_pad as u8, 0x07]);
        let mac = hmac::sign(&self.k1, &session);
        session.extend_from_slice(&mac.as_ref()[..12]);
        let mut packet = RMCP.to_vec();
        packet.extend_from_slice(&session);

        let answer = self.round_trip(&packet, &what).await?;
        let message = self.open_answer(&answer, &what)?;
        // rqAddr, netFn/LUN, checksum, rsAddr, rqSeq/LUN, cmd, completion code, data, checksum.
        if message.len() < 8 || message[5] != cmd {
            return Err(self.failed(&what, "the answer is not the one asked for", false));
        }
        match message[6] {
            0 => Ok(message[7..message.len() - 1].to_vec()),
            code => Err(self.failed(
                &what,
                format!("the BMC answered completion code {code:#04x}"),
                code == 0xc0 || code == 0xc3,
            )),
        }
    }

    /// Checks an answer's integrity and decrypts its message.
    fn open_answer(&self, packet: &[u8], what: &str) -> Result<Vec<u8>, PowerError> {
        let bad = |why: &str| self.failed(what, why.to_string(), false);
        if packet.len() < 4 + 12 + 12 || packet[..4] != RMCP || packet[5] != SECURED_IPMI {
            return Err(bad("the answer is not an encrypted, signed IPMI message"));
        }
        let session = &packet[4..];
        let (signed, mac) = session.split_at(session.len() - 12);
        let expected = hmac::sign(&self.k1, signed);
        if !constant_eq(&expected.as_ref()[..12], mac) {
            return Err(bad("the answer's signature does not verify"));
        }
        let length = usize::from(u16::from_le_bytes([session[10], session[11]]));
        let payload = session
            .get(12..12 + length)
            .filter(|p| p.len() >= 32 && p.len() % 16 == 0)
            .ok_or_else(|| bad("a truncated answer"))?;
        let (iv, encrypted) = payload.split_at(16);
        let key =
            DecryptingKey::cbc(UnboundCipherKey::new(&AES_128, &self.aes).map_err(|_| bad("AES"))?)
                .map_err(|_| bad("AES"))?;
        let mut plain = encrypted.to_vec();
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        let plain = key
            .decrypt(&mut plain, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| bad("the answer does not decrypt"))?;
        let pad = usize::from(*plain.last().ok_or_else(|| bad("an empty answer"))?);
        if pad + 1 > plain.len() {
            return Err(bad("the answer's padding is wrong"));
        }
        Ok(plain[..plain.len() - pad - 1].to_vec())
    }

    /// The chassis' power.
    pub async fn state(&mut self) -> Result<PowerState, PowerError> {
        let status = self.command(NETFN_CHASSIS, 0x01, &[]).await?;
        Ok(match status.first() {
            Some(byte) if byte & 1 == 1 => PowerState::On,
            Some(_) => PowerState::Off,
            None => PowerState::Other("unknown".into()),
        })
    }

    /// Chassis Control for `action` (not [`Action::Status`]); a cycle of a machine that is off
    /// powers it on.
    pub async fn act(
        &mut self,
        action: Action,
        state: &PowerState,
    ) -> Result<&'static str, PowerError> {
        let (control, said) = match action {
            Action::Status => return Ok("status"),
            Action::On => (0x01, "power on"),
            Action::Off => (0x00, "power off"),
            Action::Cycle if *state == PowerState::Off => (0x01, "power on"),
            Action::Cycle => (0x02, "power cycle"),
        };
        self.command(NETFN_CHASSIS, 0x02, &[control]).await?;
        Ok(said)
    }

    /// Boots from the network once (Set System Boot Options, parameter 5: valid, next boot
    /// only, PXE), as `ipmitool chassis bootdev pxe` does.
    pub async fn pxe_once(&mut self) -> Result<(), PowerError> {
        for data in [
            &[0x00, 0x01][..],
            &[0x04, 0x01, 0x01],
            &[0x05, 0x80, 0x04, 0x00, 0x00, 0x00],
            &[0x00, 0x02],
            &[0x00, 0x00],
        ] {
            match self.command(NETFN_CHASSIS, 0x08, data).await {
                Ok(_) => {}
                // Set-in-progress and the acknowledgement are optional (0x80: not supported).
                Err(PowerError::Bmc { reason, .. })
                    if data[0] != 0x05 && reason.ends_with("0x80") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends the session.
    pub async fn close(mut self) {
        let sid = self.sid_c;
        let _ = self.command(NETFN_APP, 0x3c, &sid).await;
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_make_the_bytes_sum_to_zero() {
        let bytes: [u8; 2] = [0x20, 0x18];
        assert_eq!(
            bytes[0]
                .wrapping_add(bytes[1])
                .wrapping_add(checksum(&bytes)),
            0
        );
        assert_eq!(checksum(&[0x81, 0x04, 0x01]), 0x7a);
    }
}
