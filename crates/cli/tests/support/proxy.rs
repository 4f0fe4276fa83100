//! A fault-injecting TCP proxy for chorus peer links.
//!
//! Every member is reached by its peers only through the proxy in front of it: the peer URLs in
//! `--initial-cluster` are the proxies' addresses, and each member listens
//! (`--listen-peer-urls`) on a port only its proxy dials. A peer connection carries traffic one
//! way (the dialer writes, the member reads), and its first frame is a `Hello` naming the
//! dialer, so the proxy in front of member `to` knows, per connection, the link `(from, to)`
//! it carries.
//!
//! The proxy forwards whole frames (a 4-byte big-endian length and a `chorus.peer.v1.Frame`),
//! so a link can be cut and healed without ever handing a member half a frame. A cut link is a
//! black hole, as a real partition is: the sender's writes still succeed, its frames vanish.
//! A delayed link holds each frame back for the delay, keeping their order.
//!
//! Threads, not tasks: the proxy must keep running while the test blocks on processes and
//! `etcdctl`. Each connection has a reader thread (frames in, dropped or stamped with their
//! release time) and a writer thread (frames out when due).

use chorus_proto::peer;
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest frame the proxy passes on: the server's own limit (`peer_codec::FRAME_BYTES_MAX`).
const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The faults in force on every link, by member index: shared by all the proxies of a cluster.
#[derive(Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Default)]
struct FaultState {
    /// Links `(from, to)` whose frames are dropped.
    cut: BTreeSet<(usize, usize)>,
    /// Links `(from, to)` whose frames are held back this long.
    delay: BTreeMap<(usize, usize), Duration>,
}

/// What to do with one frame on a link.
enum Verdict {
    Drop,
    Forward(Duration),
}

impl Faults {
    /// Drops every frame from `from` to `to` until healed.
    pub fn cut(&self, from: usize, to: usize) {
        self.state.lock().unwrap().cut.insert((from, to));
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: usize, b: usize) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts `member` off from every other of the `members` members, both ways.
    pub fn isolate(&self, member: usize, members: usize) {
        for other in (0..members).filter(|other| *other != member) {
            self.cut_both(member, other);
        }
    }

    /// Holds every frame from `from` to `to` back for `delay`.
    pub fn delay(&self, from: usize, to: usize, delay: Duration) {
        self.state.lock().unwrap().delay.insert((from, to), delay);
    }

    /// Lets frames from `from` to `to` through again, at once.
    pub fn heal(&self, from: usize, to: usize) {
        let mut state = self.state.lock().unwrap();
        state.cut.remove(&(from, to));
        state.delay.remove(&(from, to));
    }

    /// Removes every cut and delay.
    pub fn heal_all(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut.clear();
        state.delay.clear();
    }

    fn verdict(&self, from: usize, to: usize) -> Verdict {
        let state = self.state.lock().unwrap();
        if state.cut.contains(&(from, to)) {
            Verdict::Drop
        } else {
            Verdict::Forward(
                state
                    .delay
                    .get(&(from, to))
                    .copied()
                    .unwrap_or(Duration::ZERO),
            )
        }
    }
}

/// The proxy in front of one member. Stops accepting when dropped.
pub struct Proxy {
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on `listen` and forwards each connection to `target` (member `to`'s real peer
    /// port). `member_ids[i]` is member `i`'s id, which its hellos carry.
    pub fn start(
        listen: TcpListener,
        target: String,
        to: usize,
        member_ids: Vec<u64>,
        faults: Arc<Faults>,
    ) -> Proxy {
        let stop = Arc::new(AtomicBool::new(false));
        listen.set_nonblocking(true).unwrap();
        let accept_stop = stop.clone();
        std::thread::spawn(move || {
            while !accept_stop.load(Ordering::Relaxed) {
                match listen.accept() {
                    Ok((inbound, _)) => {
                        let target = target.clone();
                        let member_ids = member_ids.clone();
                        let faults = faults.clone();
                        std::thread::spawn(move || {
                            relay(inbound, &target, to, &member_ids, &faults);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one frame: its length prefix and body, both returned as the bytes to pass on.
/// `None` at end of stream, on an error, or for a frame over the limit.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut prefix = [0_u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let length = usize::try_from(u32::from_be_bytes(prefix)).ok()?;
    if length > FRAME_BYTES_MAX {
        return None;
    }
    let mut frame = vec![0_u8; 4 + length];
    frame[..4].copy_from_slice(&prefix);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// Relays one peer connection to member `to`, applying the faults of its link. Anything that
/// is not a chorus peer stream starting with a hello from a known member is closed.
fn relay(mut inbound: TcpStream, target: &str, to: usize, member_ids: &[u64], faults: &Faults) {
    let _ = inbound.set_nodelay(true);
    let _ = inbound.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(hello) = read_frame(&mut inbound) else {
        return;
    };
    let from = peer::Frame::decode(&hello[4..])
        .ok()
        .and_then(|frame| frame.hello)
        .and_then(|hello| member_ids.iter().position(|id| *id == hello.node_id));
    let Some(from) = from else {
        return;
    };
    let Ok(mut outbound) = TcpStream::connect(target) else {
        return;
    };
    let _ = outbound.set_nodelay(true);
    let _ = inbound.set_read_timeout(None);
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_inbound = inbound.try_clone().unwrap();
    std::thread::spawn(move || {
        for (due, frame) in receiver {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if outbound.write_all(&frame).is_err() {
                break;
            }
        }
        // The member is gone: close the dialer's side too, so that it reconnects.
        let _ = outbound.shutdown(Shutdown::Both);
        let _ = writer_inbound.shutdown(Shutdown::Both);
    });
    if sender.send((Instant::now(), hello)).is_err() {
        return;
    }
    while let Some(frame) = read_frame(&mut inbound) {
        match faults.verdict(from, to) {
            Verdict::Drop => {}
            Verdict::Forward(delay) => {
                if sender.send((Instant::now() + delay, frame)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = inbound.shutdown(Shutdown::Both);
}
