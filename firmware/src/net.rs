//! The IP side of one network link: a smoltcp interface over a [`Device`] with the sockets the
//! controller needs — DHCP (Ethernet only), DNS and one UDP socket.
//!
//! A [`Link`] is generic over the device so the GSM path (issue 10: PPP over the modem UART,
//! smoltcp's medium-ip) becomes a second `Link` beside Ethernet with the same methods; each link
//! has its own interface and socket set, so routing is simply "send on the link the controller
//! chose".
//!
//! Only UDP, DHCPv4 and DNS are compiled into smoltcp (see Cargo.toml): there is no TCP code in
//! the image, which `scripts/firmware-size.sh` checks in the symbol table.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::dns::{self, DnsQuery, GetQueryResultError, QueryHandle};
use smoltcp::socket::{dhcpv4, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    DnsQueryType, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr,
};

/// How a link gets its IPv4 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// Ask a DHCP server.
    Dhcp,
    /// Fixed settings (from the device configuration).
    Static(IpSettings),
}

/// The IPv4 settings in use on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSettings {
    /// Address and prefix.
    pub address: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv4Address>,
    /// DNS server.
    pub dns: Option<Ipv4Address>,
}

/// Something that happened on a link, for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link has (new) IP settings.
    Up(IpSettings),
    /// The link lost its IP settings (DHCP lease expired).
    Down,
}

/// Sizes of the UDP socket's buffers. The protocol is stop-and-wait with datagrams of at most
/// [`tek_proto::MAX_DATAGRAM`] (1024) bytes, so one largest datagram each way is all it needs:
/// the loop drains the receive side after every poll and flushes the link after every send (a
/// ring that is empty starts over at its beginning, so a 1024-byte datagram always fits then).
/// Several small datagrams (an Ack and a Config arriving together; a ConfigAck and a Status
/// queued while the gateway's address is being resolved) share the bytes: hence more than one
/// metadata slot. A datagram that finds no room is lost like any UDP datagram, and the
/// protocol's retransmissions cover it.
const UDP_RX_PACKETS: usize = 4;
const UDP_RX_BYTES: usize = tek_proto::MAX_DATAGRAM;
const UDP_TX_PACKETS: usize = 2;
const UDP_TX_BYTES: usize = tek_proto::MAX_DATAGRAM;

/// The statically allocated bookkeeping of one link's sockets (smoltcp's `EMPTY` values are not
/// all zero bytes, so this is `.data`: kept apart from the payload bytes, which are `.bss`).
pub struct LinkBuffers {
    sockets: [SocketStorage<'static>; 3],
    dns_queries: [Option<DnsQuery>; 1],
    udp_rx_meta: [udp::PacketMetadata; UDP_RX_PACKETS],
    udp_tx_meta: [udp::PacketMetadata; UDP_TX_PACKETS],
}

impl LinkBuffers {
    /// Empty buffers (const, so they can live in a `static`).
    pub const fn new() -> LinkBuffers {
        LinkBuffers {
            sockets: [SocketStorage::EMPTY; 3],
            dns_queries: [const { None }; 1],
            udp_rx_meta: [udp::PacketMetadata::EMPTY; UDP_RX_PACKETS],
            udp_tx_meta: [udp::PacketMetadata::EMPTY; UDP_TX_PACKETS],
        }
    }
}

/// The statically allocated payload bytes of one link's UDP socket (all zero: `.bss`).
pub struct UdpPayload {
    rx: [u8; UDP_RX_BYTES],
    tx: [u8; UDP_TX_BYTES],
}

impl UdpPayload {
    /// Zeroed buffers (const, so they can live in a `static`).
    pub const fn new() -> UdpPayload {
        UdpPayload {
            rx: [0; UDP_RX_BYTES],
            tx: [0; UDP_TX_BYTES],
        }
    }
}

/// A name resolution could not start or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// No DNS server known yet, or the name is not a valid DNS name.
    CannotStart,
    /// Another resolution is still running (one at a time is all the controller needs).
    Busy,
    /// The server answered without an address, or did not answer.
    Failed,
}

/// A UDP datagram could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The link has no IP address yet.
    NoAddress,
    /// The socket's transmit buffer is full (the datagram is lost, as on any UDP path).
    Full,
}

/// One network link.
pub struct Link<D: Device + 'static> {
    device: &'static mut D,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    dns: SocketHandle,
    udp: SocketHandle,
    query: Option<QueryHandle>,
    settings: Option<IpSettings>,
    pending_event: Option<LinkEvent>,
}

impl<D: Device + 'static> Link<D> {
    /// Brings a link up on `device` with `addressing`.
    pub fn new(
        device: &'static mut D,
        hw: HardwareAddress,
        addressing: Addressing,
        random_seed: u64,
        buffers: &'static mut LinkBuffers,
        payload: &'static mut UdpPayload,
        now: Instant,
    ) -> Link<D> {
        let mut config = Config::new(hw);
        config.random_seed = random_seed;
        let iface = Interface::new(config, device, now);
        let LinkBuffers {
            sockets,
            dns_queries,
            udp_rx_meta,
            udp_tx_meta,
        } = buffers;
        let UdpPayload {
            rx: udp_rx,
            tx: udp_tx,
        } = payload;
        let mut set = SocketSet::new(&mut sockets[..]);
        let dns = set.add(dns::Socket::new(&[], &mut dns_queries[..]));
        let udp = set.add(udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], &mut udp_rx[..]),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], &mut udp_tx[..]),
        ));
        let mut link = Link {
            device,
            iface,
            sockets: set,
            dhcp: None,
            dns,
            udp,
            query: None,
            settings: None,
            pending_event: None,
        };
        link.set_addressing(addressing);
        link
    }

    /// Switches between DHCP and fixed settings (drops any lease or address in use).
    pub fn set_addressing(&mut self, addressing: Addressing) {
        if let Some(h) = self.dhcp.take() {
            self.sockets.remove(h);
        }
        self.apply(None);
        match addressing {
            Addressing::Dhcp => {
                self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
            }
            Addressing::Static(settings) => self.apply(Some(settings)),
        }
    }

    fn apply(&mut self, settings: Option<IpSettings>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(s) = settings {
                // Capacity is at least one address: cannot fail.
                let _ = addrs.push(IpCidr::Ipv4(s.address));
            }
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = settings.and_then(|s| s.gateway) {
            // The route table has room for the default route: cannot fail.
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
        let servers: &[IpAddress] = match settings.and_then(|s| s.dns) {
            Some(dns) => &[IpAddress::Ipv4(dns)],
            None => &[],
        };
        // A query in flight uses the old server list; let it fail and let the controller retry.
        self.sockets
            .get_mut::<dns::Socket>(self.dns)
            .update_servers(servers);
        if settings != self.settings {
            self.settings = settings;
            self.pending_event = Some(match settings {
                Some(s) => LinkEvent::Up(s),
                None => LinkEvent::Down,
            });
        }
    }

    /// Whether the link asks DHCP for its settings.
    pub fn is_dhcp(&self) -> bool {
        self.dhcp.is_some()
    }

    /// Moves frames between the device and the sockets; returns a change of the link's state.
    #[inline(never)]
    pub fn poll(&mut self, now: Instant) -> Option<LinkEvent> {
        self.iface.poll(now, self.device, &mut self.sockets);
        if let Some(h) = self.dhcp {
            match self.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
                Some(dhcpv4::Event::Configured(cfg)) => {
                    let settings = IpSettings {
                        address: cfg.address,
                        gateway: cfg.router,
                        dns: cfg.dns_servers.first().copied(),
                    };
                    self.apply(Some(settings));
                }
                Some(dhcpv4::Event::Deconfigured) => self.apply(None),
                None => {}
            }
        }
        self.pending_event.take()
    }

    /// Moves frames only (the DHCP socket keeps any news for the next [`Link::poll`]).
    #[inline(never)]
    pub fn flush(&mut self, now: Instant) {
        self.iface.poll(now, self.device, &mut self.sockets);
    }

    /// When [`Link::poll`] must be called next at the latest (`None`: only on a received frame).
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets)
    }

    /// Starts resolving `name` to an IPv4 address. Out of line (like [`Link::send`]): smoltcp
    /// builds the query (a 128-byte name buffer) on the stack, which would otherwise sit in the
    /// caller's frame under everything else it calls.
    #[inline(never)]
    pub fn resolve(&mut self, name: &str) -> Result<(), ResolveError> {
        if self.query.is_some() {
            return Err(ResolveError::Busy);
        }
        let socket = self.sockets.get_mut::<dns::Socket>(self.dns);
        let q = socket
            .start_query(self.iface.context(), name, DnsQueryType::A)
            .map_err(|_| ResolveError::CannotStart)?;
        self.query = Some(q);
        Ok(())
    }

    /// The result of the running resolution, once there is one.
    pub fn resolve_result(&mut self) -> Option<Result<Ipv4Address, ResolveError>> {
        let q = self.query?;
        let socket = self.sockets.get_mut::<dns::Socket>(self.dns);
        match socket.get_query_result(q) {
            Err(GetQueryResultError::Pending) => None,
            Err(GetQueryResultError::Failed) => {
                self.query = None;
                Some(Err(ResolveError::Failed))
            }
            Ok(addrs) => {
                self.query = None;
                // Only IPv4 is compiled in, so every answer is an A record.
                Some(
                    addrs
                        .iter()
                        .map(|IpAddress::Ipv4(v4)| *v4)
                        .next()
                        .ok_or(ResolveError::Failed),
                )
            }
        }
    }

    /// Abandons the running resolution, if any.
    pub fn cancel_resolve(&mut self) {
        if let Some(q) = self.query.take() {
            self.sockets
                .get_mut::<dns::Socket>(self.dns)
                .cancel_query(q);
        }
    }

    /// Uses `port` as the UDP source port from now on (a new one per attempt); datagrams still
    /// queued for the old port are dropped.
    pub fn bind(&mut self, port: u16) {
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        if socket.endpoint().port == port {
            return;
        }
        socket.close();
        // Only fails for port 0 or an open socket; the socket was just closed.
        let _ = socket.bind(port);
    }

    /// The UDP source port in use (0 = none).
    pub fn port(&mut self) -> u16 {
        self.sockets
            .get_mut::<udp::Socket>(self.udp)
            .endpoint()
            .port
    }

    /// Queues a datagram to `to` from the bound port. Out of line, see [`Link::resolve`].
    #[inline(never)]
    pub fn send(&mut self, to: IpEndpoint, bytes: &[u8]) -> Result<(), SendError> {
        if self.settings.is_none() {
            return Err(SendError::NoAddress);
        }
        self.sockets
            .get_mut::<udp::Socket>(self.udp)
            .send_slice(bytes, to)
            .map_err(|_| SendError::Full)
    }

    /// Whether a received datagram is waiting.
    pub fn can_recv(&mut self) -> bool {
        self.sockets.get_mut::<udp::Socket>(self.udp).can_recv()
    }

    /// Takes the next received datagram into `buf`: its length and sender.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<(usize, IpEndpoint)> {
        let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
        match socket.recv_slice(buf) {
            Ok((n, meta)) => Some((n, meta.endpoint)),
            // Truncated (larger than `buf`) or nothing waiting: both mean no usable datagram.
            Err(_) => None,
        }
    }

    /// The device under this link.
    pub fn device(&mut self) -> &mut D {
        self.device
    }
}
