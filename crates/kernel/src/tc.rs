//! Traffic control: a token bucket filter (TBF) as the root qdisc of a link.
//!
//! `netlink-packet-route` has no typed TBF options, so the options are
//! encoded here from the kernel's `include/uapi/linux/pkt_sched.h`:
//! `TCA_TBF_PARMS` (a `struct tc_tbf_qopt`), `TCA_TBF_RATE64` for rates of
//! 2^32 bytes/s and more, and `TCA_TBF_BURST` (the bucket size in bytes,
//! from which the kernel derives the bucket's time). One `RTM_NEWQDISC`
//! with `NLM_F_CREATE | NLM_F_REPLACE` installs or changes the qdisc, as
//! `tc qdisc replace dev X root tbf ...` does.

use netlink_packet_core::{DefaultNla, Nla, NlaBuffer, NlasIterator};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, ErrorKind, Result};
use crate::socket::{Netlink, NLM_F_CREATE, NLM_F_REPLACE};

// Attributes inside TCA_OPTIONS of a tbf qdisc (enum in pkt_sched.h).
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// `TCA_OPTIONS` of a tc message.
const TCA_OPTIONS: u16 = 2;
/// `TC_LINKLAYER_ETHERNET`: tells the kernel no legacy rate table follows.
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `sizeof(struct tc_tbf_qopt)`: two 12-byte `tc_ratespec`s, then
/// `limit`, `buffer` and `mtu` (u32 each).
const TBF_QOPT_LEN: usize = 36;
/// The kernel's packet-scheduler clock ticks are 64 ns (`PSCHED_SHIFT` 6).
const PSCHED_TICK_NS: u128 = 64;

/// The root qdisc of a link, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    /// Interface index.
    pub index: u32,
    /// Qdisc type: `tbf`, `noqueue`, `pfifo_fast`, `fq_codel`, ...
    pub kind: String,
    /// The qdisc's handle (`major << 16 | minor`); 0 for a default qdisc.
    pub handle: u32,
    /// The token bucket's settings when `kind` is `tbf`.
    pub tbf: Option<Tbf>,
}

/// Settings of a token bucket filter, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Sustained rate in bytes per second.
    pub rate: u64,
    /// Bucket size in bytes: how much may pass at once above the rate.
    pub burst: u64,
    /// Bytes that may wait in the queue for tokens before packets drop.
    pub limit: u32,
}

impl Netlink {
    /// Makes a token bucket filter the root qdisc of link `index` (replacing
    /// whatever root qdisc it had): `rate` bytes per second, bursts of up to
    /// `burst` bytes, and up to `limit` bytes queued for tokens.
    ///
    /// `burst` should be at least the link's MTU plus its header, or the
    /// kernel drops every full-size packet.
    pub fn set_tbf(&mut self, index: u32, rate: u64, burst: u64, limit: u32) -> Result<()> {
        let netns = self.netns_label().to_owned();
        let action = || {
            format!(
                "set tbf qdisc (rate {rate} B/s, burst {burst} B, limit {limit} B) \
                 on link #{index} in {netns}"
            )
        };
        let options =
            tbf_options(rate, burst, limit).map_err(|why| Error::invalid(action(), why))?;
        let mut msg = root_message(index);
        msg.attributes.push(TcAttribute::Kind("tbf".into()));
        msg.attributes.push(TcAttribute::Options(options));
        self.ack(
            &RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            action,
        )
    }

    /// Removes the root qdisc of link `index`, which returns the link to its
    /// default qdisc. Returns whether there was one to remove (a link with
    /// only its default qdisc has none).
    pub fn delete_root_qdisc(&mut self, index: u32) -> Result<bool> {
        let netns = self.netns_label().to_owned();
        let action = || format!("delete root qdisc of link #{index} in {netns}");
        match self.ack(
            &RouteNetlinkMessage::DelQueueDiscipline(root_message(index)),
            0,
            action,
        ) {
            Ok(()) => Ok(true),
            // "Cannot delete qdisc with handle of zero": only the default.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The root qdisc of link `index`: an installed one, or the kernel's
    /// default (handle 0, e.g. `noqueue` on a veth); `Ok(None)` when the
    /// kernel reports none (or the link does not exist).
    pub fn root_qdisc(&mut self, index: u32) -> Result<Option<Qdisc>> {
        let netns = self.netns_label().to_owned();
        let action = || format!("list qdiscs of link #{index} in {netns}");
        let replies = self.dump(
            &RouteNetlinkMessage::GetQueueDiscipline(TcMessage::with_index(index as i32)),
            action,
        )?;
        for reply in replies {
            let RouteNetlinkMessage::NewQueueDiscipline(msg) = reply else {
                continue;
            };
            if msg.header.index != index as i32 || msg.header.parent != TcHandle::ROOT {
                continue;
            }
            return parse_qdisc(index, msg)
                .map(Some)
                .map_err(|why| Error::new(action(), ErrorKind::Protocol(why)));
        }
        Ok(None)
    }

    /// The type of the root qdisc of link `index` (`tbf`, `noqueue`, ...).
    pub fn qdisc_kind(&mut self, index: u32) -> Result<Option<String>> {
        Ok(self.root_qdisc(index)?.map(|q| q.kind))
    }
}

/// A qdisc message for the root of link `index` (kernel picks the handle).
fn root_message(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::ROOT;
    msg.header.handle = TcHandle::UNSPEC;
    msg
}

/// The `TCA_OPTIONS` attributes of a tbf qdisc.
fn tbf_options(rate: u64, burst: u64, limit: u32) -> std::result::Result<Vec<TcOption>, String> {
    if rate == 0 {
        return Err("the rate must be above 0 bytes/s".into());
    }
    if burst == 0 {
        return Err("the burst must be above 0 bytes".into());
    }
    let burst32 = u32::try_from(burst)
        .map_err(|_| format!("a burst of {burst} bytes is over the kernel's limit of 4 GiB"))?;
    if limit == 0 {
        return Err("the queue limit must be above 0 bytes (0 drops every packet)".into());
    }
    // The bucket's size as time at the rate, in scheduler ticks; the kernel
    // recomputes it from TCA_TBF_BURST, but it must fit the struct.
    let ticks = (burst as u128 * 1_000_000_000 / rate as u128) / PSCHED_TICK_NS;
    let buffer = u32::try_from(ticks).map_err(|_| {
        format!(
            "a burst of {burst} bytes at {rate} bytes/s takes too long to drain \
             (over the kernel's bucket time limit); raise the rate or lower the burst"
        )
    })?;
    let mut parms = [0u8; TBF_QOPT_LEN];
    // rate: struct tc_ratespec { cell_log u8, linklayer u8, overhead u16,
    // cell_align i16, mpu u16, rate u32 }
    parms[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(rate).unwrap_or(u32::MAX);
    parms[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate (bytes 12..24) stays zero: no peak rate.
    parms[24..28].copy_from_slice(&limit.to_ne_bytes());
    parms[28..32].copy_from_slice(&buffer.to_ne_bytes());
    // mtu (bytes 32..36) zero: only used with a peak rate.
    let mut options = vec![TcOption::Other(DefaultNla::new(
        TCA_TBF_PARMS,
        parms.to_vec(),
    ))];
    if rate > u32::MAX as u64 {
        options.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            rate.to_ne_bytes().to_vec(),
        )));
    }
    options.push(TcOption::Other(DefaultNla::new(
        TCA_TBF_BURST,
        burst32.to_ne_bytes().to_vec(),
    )));
    Ok(options)
}

fn parse_qdisc(index: u32, msg: TcMessage) -> std::result::Result<Qdisc, String> {
    let handle = u32::from(msg.header.handle.major) << 16 | u32::from(msg.header.handle.minor);
    let mut kind = String::new();
    let mut options = Vec::new();
    for attr in msg.attributes {
        match attr {
            TcAttribute::Kind(k) => kind = k,
            TcAttribute::Options(opts) => {
                for opt in opts {
                    // Unknown kinds (tbf among them) come back as the whole
                    // TCA_OPTIONS attribute, undecoded.
                    if let TcOption::Other(nla) = opt {
                        if nla.kind() & 0x3fff == TCA_OPTIONS {
                            let mut value = vec![0u8; nla.value_len()];
                            nla.emit_value(&mut value);
                            options.extend(value);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let tbf = if kind == "tbf" {
        Some(parse_tbf(&options)?)
    } else {
        None
    };
    Ok(Qdisc {
        index,
        kind,
        handle,
        tbf,
    })
}

/// Reads a tbf qdisc's options back: rate (TCA_TBF_RATE64 when present),
/// limit, and the burst in bytes from the bucket's time at the rate.
fn parse_tbf(options: &[u8]) -> std::result::Result<Tbf, String> {
    let mut parms = None;
    let mut rate64 = None;
    for nla in NlasIterator::new(options) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| format!("bad tbf option: {e}"))?;
        let value = nla.value();
        match nla.kind() & 0x3fff {
            TCA_TBF_PARMS if value.len() >= TBF_QOPT_LEN => parms = Some(value.to_vec()),
            TCA_TBF_RATE64 if value.len() >= 8 => {
                rate64 = Some(u64::from_ne_bytes(value[..8].try_into().unwrap()))
            }
            _ => {}
        }
    }
    let parms = parms.ok_or("tbf qdisc without TCA_TBF_PARMS")?;
    let u32_at = |off: usize| u32::from_ne_bytes(parms[off..off + 4].try_into().unwrap());
    let rate = rate64.unwrap_or(u32_at(8) as u64);
    let limit = u32_at(24);
    let buffer_ns = u32_at(28) as u128 * PSCHED_TICK_NS;
    let burst = (buffer_ns * rate as u128).div_ceil(1_000_000_000) as u64;
    Ok(Tbf { rate, burst, limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    fn encoded(options: &[TcOption]) -> Vec<u8> {
        let mut buf = vec![0u8; options.buffer_len()];
        options.emit(&mut buf);
        buf
    }

    #[test]
    fn tbf_options_round_trip() {
        let options = tbf_options(1_000_000, 20_000, 45_000).unwrap();
        let tbf = parse_tbf(&encoded(&options)).unwrap();
        assert_eq!(tbf.rate, 1_000_000);
        assert_eq!(tbf.limit, 45_000);
        // The bucket time is rounded down to 64 ns ticks.
        assert!((19_990..=20_000).contains(&tbf.burst), "{tbf:?}");
    }

    #[test]
    fn large_rates_use_rate64() {
        let rate = 10 * (u32::MAX as u64);
        let options = tbf_options(rate, 1_000_000, 1_000_000).unwrap();
        assert_eq!(options.len(), 3);
        assert_eq!(parse_tbf(&encoded(&options)).unwrap().rate, rate);
    }

    #[test]
    fn rejects_what_the_kernel_would_misread() {
        assert!(tbf_options(0, 1500, 1500).unwrap_err().contains("rate"));
        assert!(tbf_options(1000, 0, 1500).unwrap_err().contains("burst"));
        assert!(tbf_options(1000, 1500, 0).unwrap_err().contains("limit"));
        assert!(tbf_options(1, u32::MAX as u64, 10)
            .unwrap_err()
            .contains("too long"));
    }
}
