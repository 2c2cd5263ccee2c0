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
    keys: Keys,
}

/// The session's integrity key (K1) and confidentiality key (the first 16 bytes of K2).
pub struct Keys {
    k1: hmac::Key,
    aes: [u8; 16],
}

impl Keys {
    /// The keys RAKP derives from the session integrity key `sik`.
    pub fn from_sik(sik: &[u8]) -> Keys {
        let k1 = hmac_sha1(sik, &[&[0x01; 20]]);
        let k2 = hmac_sha1(sik, &[&[0x02; 20]]);
        let mut aes = [0; 16];
        aes.copy_from_slice(&k2.as_ref()[..16]);
        Keys {
            k1: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, k1.as_ref()),
            aes,
        }
    }

    /// The integrity code of `signed`, as a session message carries it (HMAC-SHA1-96).
    pub fn sign(&self, signed: &[u8]) -> [u8; 12] {
        let mut mac = [0; 12];
        mac.copy_from_slice(&hmac::sign(&self.k1, signed).as_ref()[..12]);
        mac
    }

    /// The packet carrying `message` in the session `sid` as its message number `seq`: the
    /// message encrypted, then the whole signed.
    pub fn seal(&self, sid: &[u8; 4], seq: u32, message: &[u8]) -> Result<Vec<u8>, PacketError> {
        // Confidentiality: IV, then AES-CBC of the message with its pad (1, 2, ... n, then n).
        let pad = (16 - (message.len() + 1) % 16) % 16;
        let mut plain = message.to_vec();
        plain.extend(1..=pad as u8);
        plain.push(pad as u8);
        let iv: [u8; 16] = random();
        let key = UnboundCipherKey::new(&AES_128, &self.aes)
            .and_then(EncryptingKey::cbc)
            .map_err(|_| PacketError::Malformed("AES"))?;
        key.less_safe_encrypt(&mut plain, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| PacketError::Malformed("AES"))?;
        let mut payload = iv.to_vec();
        payload.extend_from_slice(&plain);
        let length = u16::try_from(payload.len())
            .map_err(|_| PacketError::Malformed("a message longer than a packet"))?;

        let mut packet = RMCP.to_vec();
        packet.extend_from_slice(&[AUTH_RMCP_PLUS, SECURED_IPMI]);
        packet.extend_from_slice(sid);
        packet.extend_from_slice(&seq.to_le_bytes());
        packet.extend_from_slice(&length.to_le_bytes());
        packet.extend_from_slice(&payload);
        // Integrity: pad to a multiple of 4 with the pad length and next header, then the MAC.
        let integrity_pad = (4 - (packet.len() - 4 + 2) % 4) % 4;
        packet.extend(std::iter::repeat_n(0xff, integrity_pad));
        packet.extend_from_slice(&[integrity_pad as u8, 0x07]);
        let mac = self.sign(&packet[4..]);
        packet.extend_from_slice(&mac);
        Ok(packet)
    }

    /// A session packet's message, its integrity checked and decrypted.
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, PacketError> {
        let bad = PacketError::Malformed;
        if packet.len() < 4 + 12 + 12 || packet[..4] != RMCP || packet[5] != SECURED_IPMI {
            return Err(bad("the answer is not an encrypted, signed IPMI message"));
        }
        let session = &packet[4..];
        let (signed, mac) = session.split_at(session.len() - 12);
        if !constant_eq(&self.sign(signed), mac) {
            return Err(bad("the answer's signature does not verify"));
        }
        let length = usize::from(u16::from_le_bytes([session[10], session[11]]));
        let payload = session
            .get(12..12 + length)
            .filter(|p| p.len() >= 32 && p.len() % 16 == 0)
            .ok_or(bad("a truncated answer"))?;
        let (iv, encrypted) = payload.split_at(16);
        let key = UnboundCipherKey::new(&AES_128, &self.aes)
            .and_then(DecryptingKey::cbc)
            .map_err(|_| bad("AES"))?;
        let mut plain = encrypted.to_vec();
        let iv: [u8; 16] = iv.try_into().expect("16 bytes");
        let plain = key
            .decrypt(&mut plain, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map_err(|_| bad("the answer does not decrypt"))?;
        let pad = usize::from(*plain.last().ok_or(bad("an empty answer"))?);
        if pad + 1 > plain.len() {
            return Err(bad("the answer's padding is wrong"));
        }
        Ok(plain[..plain.len() - pad - 1].to_vec())
    }
}

/// Why a packet from the BMC was not taken (or one to it could not be made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// A session-setup answer with an RMCP+ status code other than 0 (IPMI v2.0, table 13-15).
    Status(u8),
    /// Not the answer asked for, or not well formed: why.
    Malformed(&'static str),
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketError::Status(0x0d) => {
                f.write_str("the BMC does not know the user of its credentials file")
            }
            PacketError::Status(0x11) => {
                f.write_str("the BMC does not offer cipher suite 3 (HMAC-SHA1, AES-CBC-128)")
            }
            PacketError::Status(0x12) => {
                f.write_str("the BMC refused the role administrator for this user")
            }
            PacketError::Status(code) => write!(f, "the BMC answered status {code:#04x}"),
            PacketError::Malformed(why) => f.write_str(why),
        }
    }
}

/// A session-setup packet's payload, when it answers a message of type `kind`; None for
/// anything else (an earlier message's answer, sent again).
pub fn setup_payload(packet: &[u8], kind: u8) -> Option<Result<&[u8], PacketError>> {
    // RMCP (4), auth type, payload type, session id (4), sequence (4), length (2).
    if packet.len() < 16 || packet[..4] != RMCP || packet[5] != kind.wrapping_add(1) {
        return None;
    }
    let length = usize::from(u16::from_le_bytes([packet[14], packet[15]]));
    Some(
        packet
            .get(16..16 + length)
            .ok_or(PacketError::Malformed("a truncated answer")),
    )
}

/// A setup answer's payload of at least `len` bytes, for the session `sid_m`, with status 0.
fn setup_answer(payload: &[u8], len: usize, sid_m: &[u8; 4]) -> Result<(), PacketError> {
    match payload.get(1) {
        Some(0) if payload.len() < len => Err(PacketError::Malformed("the answer is too short")),
        Some(0) if payload[4..8] != *sid_m => Err(PacketError::Malformed(
            "the answer is for another session than ours",
        )),
        Some(0) => Ok(()),
        Some(status) => Err(PacketError::Status(*status)),
        None => Err(PacketError::Malformed("the answer is too short")),
    }
}

/// The Open Session answer: the BMC's session id, once it has taken cipher suite 3.
pub fn open_session_answer(payload: &[u8], sid_m: &[u8; 4]) -> Result<[u8; 4], PacketError> {
    setup_answer(payload, 36, sid_m)?;
    // Authentication, integrity and confidentiality, each a record of 8 with the algorithm
    // in its fifth byte: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    if payload[16] & 0x3f != 1 || payload[24] & 0x3f != 1 || payload[32] & 0x3f != 1 {
        return Err(PacketError::Malformed(
            "the BMC chose other algorithms than cipher suite 3's",
        ));
    }
    Ok(payload[8..12].try_into().expect("4 bytes"))
}

/// RAKP message 2: the BMC's random number, its GUID and its proof of the password.
pub struct Rakp2<'a> {
    pub rc: &'a [u8],
    pub guid: &'a [u8],
    pub proof: &'a [u8],
}

/// Reads RAKP message 2.
pub fn rakp2<'a>(payload: &'a [u8], sid_m: &[u8; 4]) -> Result<Rakp2<'a>, PacketError> {
    setup_answer(payload, 60, sid_m)?;
    Ok(Rakp2 {
        rc: &payload[8..24],
        guid: &payload[24..40],
        proof: &payload[40..60],
    })
}

/// Reads RAKP message 4: its integrity check value.
pub fn rakp4<'a>(payload: &'a [u8], sid_m: &[u8; 4]) -> Result<&'a [u8], PacketError> {
    setup_answer(payload, 20, sid_m)?;
    Ok(&payload[8..20])
}

/// A command's answer: rqAddr, netFn/LUN, checksum, rsAddr, rqSeq/LUN, cmd, completion code,
/// data, checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rq_seq: u8,
    pub cmd: u8,
    pub completion: u8,
    pub data: Vec<u8>,
}

impl Answer {
    /// Reads a decrypted message.
    pub fn read(message: &[u8]) -> Result<Answer, PacketError> {
        if message.len() < 8 {
            return Err(PacketError::Malformed("the answer is too short"));
        }
        Ok(Answer {
            rq_seq: message[4] >> 2,
            cmd: message[5],
            completion: message[6],
            data: message[7..message.len() - 1].to_vec(),
        })
    }
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
            keys: Keys::from_sik(&[]),
        };

        // Open Session: cipher suite 3 and nothing else.
        let sid_m: [u8; 4] = random();
        let mut open = vec![0x00, 0x04, 0x00, 0x00];
        open.extend_from_slice(&sid_m);
        open.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
        open.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
        open.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
        let what = "opening a session";
        let answer = session.exchange_plain(OPEN_SESSION, &open, what).await?;
        let sid_c = open_session_answer(&answer, &sid_m).map_err(|e| session.refusal(what, e))?;

        // RAKP 1 and 2: the BMC proves it knows the password.
        let rm: [u8; 16] = random();
        let mut rakp1 = vec![0x00, 0, 0, 0];
        rakp1.extend_from_slice(&sid_c);
        rakp1.extend_from_slice(&rm);
        rakp1.extend_from_slice(&[ROLE, 0, 0, user.len() as u8]);
        rakp1.extend_from_slice(user);
        let what = "authenticating (RAKP 2)";
        let answer = session.exchange_plain(RAKP1, &rakp1, what).await?;
        let Rakp2 { rc, guid, proof } =
            rakp2(&answer, &sid_m).map_err(|e| session.refusal(what, e))?;
        let ulen = [user.len() as u8];
        let expected = hmac_sha1(
            &kuid,
            &[&sid_m, &sid_c, &rm, rc, guid, &[ROLE], &ulen, user],
        );
        if !constant_eq(expected.as_ref(), proof) {
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
        let what = "authenticating (RAKP 4)";
        let answer = session.exchange_plain(RAKP3, &rakp3, what).await?;
        let said = rakp4(&answer, &sid_m).map_err(|e| session.refusal(what, e))?;
        let icv = hmac_sha1(sik.as_ref(), &[&rm, &sid_c, guid]);
        if !constant_eq(&icv.as_ref()[..12], said) {
            return Err(fail(
                "authenticating",
                "the BMC's session key does not match ours".into(),
                false,
            ));
        }
        session.keys = Keys::from_sik(sik.as_ref());
        session.sid_c = sid_c;
        // As administrator, for the chassis commands.
        session.command(NETFN_APP, 0x3b, &[0x04]).await?;
        Ok(session)
    }

    fn refusal(&self, what: &str, bad: PacketError) -> PowerError {
        self.failed(what, bad.to_string(), false)
    }

    /// Sends a session-setup message and returns its answer's payload.
    async fn exchange_plain(
        &self,
        kind: u8,
        payload: &[u8],
        what: &str,
    ) -> Result<Vec<u8>, PowerError> {
        let mut packet = RMCP.to_vec();
        packet.extend_from_slice(&[AUTH_RMCP_PLUS, kind, 0, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        packet.extend_from_slice(payload);
        self.round_trip(&packet, what, |answer| {
            setup_payload(answer, kind)
                .map(|read| read.map(<[u8]>::to_vec).map_err(|e| self.refusal(what, e)))
        })
        .await
    }

    /// Sends `packet` and waits for the answer `read` takes (None: an answer to an earlier
    /// message, sent twice over UDP, which is passed over), sending it again after a timeout.
    async fn round_trip<T>(
        &self,
        packet: &[u8],
        what: &str,
        read: impl Fn(&[u8]) -> Option<Result<T, PowerError>>,
    ) -> Result<T, PowerError> {
        let mut buffer = vec![0u8; 1024];
        for _ in 0..3 {
            self.socket
                .send(packet)
                .await
                .map_err(|e| self.failed(what, e.to_string(), true))?;
            let deadline = tokio::time::Instant::now() + self.timeout;
            while let Ok(received) =
                tokio::time::timeout_at(deadline, self.socket.recv(&mut buffer)).await
            {
                let n = received.map_err(|e| self.failed(what, e.to_string(), true))?;
                if let Some(answer) = read(&buffer[..n]) {
                    return answer;
                }
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

        let packet = self
            .keys
            .seal(&self.sid_c, self.seq, &message)
            .map_err(|e| self.refusal(&what, e))?;

        let rq_seq = self.rq_seq;
        let answer = self
            .round_trip(&packet, &what, |packet| {
                match self.keys.open(packet).and_then(|m| Answer::read(&m)) {
                    Ok(answer) if answer.rq_seq != rq_seq => None,
                    Ok(answer) if answer.cmd != cmd => Some(Err(self.failed(
                        &what,
                        "the answer is not the one asked for",
                        false,
                    ))),
                    Ok(answer) => Some(Ok(answer)),
                    Err(e) => Some(Err(self.refusal(&what, e))),
                }
            })
            .await?;
        match answer.completion {
            0 => Ok(answer.data),
            code => Err(self.failed(
                &what,
                format!("the BMC answered completion code {code:#04x}"),
                code == 0xc0 || code == 0xc3,
            )),
        }
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

    /// Chassis Status's answer, as a BMC writes it: power on or off, completion code 0.
    fn status_answer(rq_seq: u8, on: bool) -> Vec<u8> {
        let mut message = vec![0x81, 0x04];
        message.push(checksum(&message));
        message.extend_from_slice(&[0x20, rq_seq << 2, 0x01, 0x00, u8::from(on), 0x00, 0x00]);
        message.push(checksum(&message[3..]));
        message
    }

    #[test]
    fn a_sealed_answer_opens_to_its_message_and_a_changed_byte_does_not() {
        let keys = Keys::from_sik(b"a session integrity key");
        let message = status_answer(5, true);
        let packet = keys.seal(b"sidm", 7, &message).unwrap();
        let opened = keys.open(&packet).unwrap();
        assert_eq!(opened, message);
        assert_eq!(
            Answer::read(&opened).unwrap(),
            Answer {
                rq_seq: 5,
                cmd: 0x01,
                completion: 0,
                data: vec![0x01, 0x00, 0x00]
            }
        );
        for at in [5, 10, 20, packet.len() - 1] {
            let mut changed = packet.clone();
            changed[at] ^= 0x01;
            assert!(keys.open(&changed).is_err(), "byte {at} changed");
        }
        let other = Keys::from_sik(b"another key");
        assert_eq!(
            other.open(&packet),
            Err(PacketError::Malformed(
                "the answer's signature does not verify"
            ))
        );
        assert!(keys.open(&packet[..20]).is_err());
    }

    /// UDP may deliver an answer twice (the BMC answered a message sent again after a
    /// timeout): the copy that comes late, with an earlier rqSeq, is not the next answer.
    #[tokio::test]
    async fn a_late_copy_of_an_earlier_answer_is_passed_over() {
        let bmc = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(bmc.local_addr().unwrap()).await.unwrap();
        let keys = || Keys::from_sik(b"k");
        let mut session = Session {
            socket,
            bmc: "ipmi://test".into(),
            timeout: Duration::from_secs(5),
            sid_c: *b"bmc!",
            seq: 0,
            rq_seq: 0,
            keys: keys(),
        };
        let fake_bmc = tokio::spawn(async move {
            let mut buffer = [0; 1024];
            let (_, from) = bmc.recv_from(&mut buffer).await.unwrap();
            // An earlier status's answer again (off), then this one's (on).
            for (rq_seq, on) in [(0, false), (1, true)] {
                let packet = keys().seal(b"mine", 1, &status_answer(rq_seq, on)).unwrap();
                bmc.send_to(&packet, from).await.unwrap();
            }
        });
        assert_eq!(session.state().await.unwrap(), PowerState::On);
        fake_bmc.await.unwrap();
    }

    #[test]
    fn setup_answers_are_checked_for_their_session_status_and_algorithms() {
        let sid_m = *b"mine";
        let mut open = vec![0x00, 0x00, 0x04, 0x00];
        open.extend_from_slice(&sid_m);
        open.extend_from_slice(b"bmc!");
        for kind in 0..3u8 {
            open.extend_from_slice(&[kind, 0, 0, 0x08, 0x01, 0, 0, 0]);
        }
        assert_eq!(open_session_answer(&open, &sid_m), Ok(*b"bmc!"));
        assert_eq!(
            open_session_answer(&open, b"else"),
            Err(PacketError::Malformed(
                "the answer is for another session than ours"
            ))
        );
        let mut weaker = open.clone();
        weaker[32] = 0x00; // no confidentiality
        assert_eq!(
            open_session_answer(&weaker, &sid_m),
            Err(PacketError::Malformed(
                "the BMC chose other algorithms than cipher suite 3's"
            ))
        );
        // A refusal is as short as the BMC likes, and says why in words.
        let refused = open_session_answer(&[0x00, 0x11], &sid_m).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the BMC does not offer cipher suite 3 (HMAC-SHA1, AES-CBC-128)"
        );
        assert!(rakp2(&open, &sid_m).is_err(), "36 bytes are not a RAKP 2");
        assert_eq!(rakp4(&open, &sid_m).unwrap(), &open[8..20]);

        // The answer to the message asked, not a late copy of an earlier one.
        let mut packet = RMCP.to_vec();
        packet.extend_from_slice(&[AUTH_RMCP_PLUS, OPEN_SESSION + 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&(open.len() as u16).to_le_bytes());
        packet.extend_from_slice(&open);
        assert_eq!(setup_payload(&packet, OPEN_SESSION), Some(Ok(&open[..])));
        assert_eq!(setup_payload(&packet, RAKP1), None);
        assert_eq!(
            setup_payload(&packet[..packet.len() - 1], OPEN_SESSION),
            Some(Err(PacketError::Malformed("a truncated answer")))
        );
    }
}
