//! # tek-firmware — the TEK pool controller on a TI Stellaris LM3S6965 (Cortex-M3)
//!
//! `main` only wires hardware to logic: the controller's brain is `tek-controller` (events in,
//! actions out, no I/O); this crate supplies the clock, the Ethernet MAC under smoltcp, flash,
//! the HALT input, sensors, relays and the status LED, and runs one cooperative loop:
//!
//! ```text
//! loop {
//!     poll the network link (frames <-> sockets; DHCP lease; DNS answers; datagrams in)
//!     feed the controller its events, sample the sensors when due
//!     carry out the controller's actions, in order (send, resolve, configure, persist, ...)
//!     open the UDP port the controller expects replies on
//!     sleep in WFI until the earliest deadline, or until a frame arrives
//! }
//! ```
//!
//! Modules by concern: [`sysctl`] (clock, clock gates), [`clock`] (SysTick time), [`eth`] (MAC
//! driver, smoltcp `phy::Device`), [`net`] (one IP link: interface + DHCP/DNS/UDP sockets),
//! [`storage`] (two flash slots behind a trait), [`bench`] (identity and HALT from the test
//! bench), [`sensors`] (simulated pool), [`leds`], [`relays`], [`rng`], [`stack`] (stack
//! painting), [`semihosting`] (the QEMU host channel), [`console`]; the GSM path: [`uart`]
//! (UART1), [`modem`] (AT commands), [`ppp`] (PPP, IPv4/UDP and DNS over it), [`radioled`].
//!
//! No heap, no TCP, `unsafe` only in the drivers (each block with a `SAFETY:` comment). The
//! large state — the controller with its telemetry log, the MAC's frame buffers, the sockets'
//! buffers — lives in `static`s with `const` initialisers that are all zero (`.bss`: no flash,
//! no stack temporaries), each handed out once as a `&'static mut` by
//! [`static_cell::ConstStaticCell`].
#![no_std]
#![no_main]

mod bench;
mod clock;
mod console;
mod eth;
mod leds;
mod modem;
mod net;
mod ppp;
mod radioled;
mod relays;
mod rng;
#[cfg(feature = "rtu-test")]
mod rtu;
mod semihosting;
mod sensors;
mod stack;
mod storage;
mod sysctl;
mod uart;

use core::mem::size_of;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpEndpoint, Ipv4Address};
use static_cell::ConstStaticCell;
use tek_controller::log::Log;
use tek_controller::{Action, Controller, Endpoint, EthernetSetup, Iface, IpInfo, Setup};

use bench::{Bench, HaltInput};
use modem::{Modem, ModemEvent};
use net::{Addressing, IpSettings, Link, LinkBuffers, LinkEvent, UdpPayload};
use sensors::Sensors;
use storage::{Flash, HostFileFlash};

/// Telemetry log capacity in records: as large as the RAM budget allows (see README.md, "Size
/// budget"): everything but the 16 kB the rest of the firmware may use (statics and stack) and
/// [`SCHEDULE_RAM`] goes to the log — 47 kB, 3007 records of 16 bytes plus the ring's indices,
/// 50 h of 1-minute records; 2880 (48 h) is the floor.
const LOG_RECORDS: usize = 3007 - RTU_TEST_RECORDS;
/// Records the `rtu-test` bench build gives up (1 kB) for its channel map, the bus driver and
/// their stack; the normal build gives none.
const RTU_TEST_RECORDS: usize = if cfg!(feature = "rtu-test") { 64 } else { 0 };
/// RAM the schedule configuration items (PROTOCOL.md 7.6.1) added: two configurations and a
/// longer flash record in the controller (728 B) and a configuration decoded on the stack
/// (184 B), taken from the log's margin above 48 h so the stack keeps its headroom.
const SCHEDULE_RAM: usize = 1024;
const _: () = assert!(size_of::<Log<LOG_RECORDS>>() <= 64 * 1024 - 16 * 1024 - SCHEDULE_RAM);
const _: () = assert!(
    size_of::<Log<{ LOG_RECORDS + RTU_TEST_RECORDS + 1 }>>() > 64 * 1024 - 16 * 1024 - SCHEDULE_RAM
);
const _: () = assert!(LOG_RECORDS >= 48 * 60);

/// The log buffer's capacity and size, read from the image by `scripts/firmware-size.sh`.
#[no_mangle]
#[used]
static TEK_LOG_RECORDS: u32 = LOG_RECORDS as u32;
#[no_mangle]
#[used]
static TEK_LOG_BYTES: u32 = size_of::<Log<LOG_RECORDS>>() as u32;

/// Firmware version reported in status.
const FIRMWARE: [u8; 3] = [0, 1, 0];
/// How often the sensors are sampled (the thermostat acts on every sample).
const SAMPLE_MS: u64 = 10_000;
/// How often the stack high-water mark is reported when it grew.
const REPORT_MS: u64 = 10_000;

type Ctl = Controller<LOG_RECORDS>;
type EthLink = Link<eth::Mac>;

#[entry]
fn main() -> ! {
    stack::paint();
    let mut app = boot();
    // Boot and the loop are measured apart: building the controller is the deepest boot-time
    // use, and says nothing about the loop.
    app.boot_stack = stack::peak();
    stack::paint();
    let rx = RX.take();
    loop {
        let now = clock::now_ms();
        app.network(now, rx);
        app.sample(now);
        #[cfg(feature = "rtu-test")]
        app.rtu.poll(now);
        app.act(now);
        app.housekeeping(now);
        app.sleep();
    }
}

/// Everything before the loop: clocks, the bench's identity, flash, the controller, the MAC.
/// Out of line so its stack frame (command line, flash records) is gone once the loop runs.
#[inline(never)]
fn boot() -> App {
    let cp = cortex_m::Peripherals::take().unwrap_or_else(|| fatal("core peripherals taken"));
    sysctl::init_clocks();
    sysctl::enable(
        sysctl::gate::EMAC0 | sysctl::gate::EPHY0 | sysctl::gate::GPIOF | sysctl::gate::GPIOG,
    );
    clock::start(cp.SYST);
    log!(
        "tek firmware {}.{}.{} on LM3S6965, {} MHz",
        FIRMWARE[0],
        FIRMWARE[1],
        FIRMWARE[2],
        sysctl::SYSCLK_HZ / 1_000_000
    );

    // The command line, parsed in place: the names borrow from this buffer, which is gone
    // (with everything else of this frame) before the loop starts.
    let mut cmdline = [0u8; 320];
    let bench = match semihosting::cmdline(&mut cmdline).map(Bench::parse) {
        Some(Ok(b)) => b,
        Some(Err(e)) => fatal_args(e),
        None => fatal("no semihosting command line (identity missing, or longer than 320 bytes)"),
    };
    let mut flash = HostFileFlash::new(bench.flash_path)
        .unwrap_or_else(|_| fatal("cannot open the flash file"));
    let halt = bench.held_at_power_up();
    if halt {
        log!("halt: HALT held at power-up");
    }

    // Power-up in place in the static: the controller reads both flash slots into its own buffer
    // and decodes only the newer valid record, straight into its fields.
    let ctl: &'static mut Ctl = CONTROLLER.take();
    let found = ctl.boot_from_flash(
        Setup {
            device_id: bench.identity.device_id,
            key: bench.identity.key.0,
            factory_servers: &bench.identity.servers,
            firmware: FIRMWARE,
            halt,
            has_gsm: bench.gsm,
            stored: None,
        },
        &mut |slot, buf| match flash.read(slot, buf) {
            Ok(()) => true,
            Err(e) => {
                log!("flash: slot {} unreadable ({:?})", slot, e);
                false
            }
        },
        clock::now_ms(),
    );
    match found {
        Some(h) => log!(
            "flash: record seq {} boot {} config version {}{}",
            h.seq,
            h.boot,
            h.version,
            FmtStatic(ctl.config().1.ethernet)
        ),
        None => log!("flash: blank"),
    }
    log!(
        "controller: device {} boot {} log {} records ({} bytes)",
        bench.identity.device_id,
        ctl.boot_counter(),
        LOG_RECORDS,
        TEK_LOG_BYTES
    );

    if bench.probe_s > 0 {
        ctl.set_probe_interval(bench.probe_s.saturating_mul(1000));
    }
    // The modem on UART1, when the board has one (`gsm` on the command line).
    let modem = bench.gsm.then(|| {
        sysctl::enable_uart(sysctl::uart_gate::UART1);
        let uart = uart::Uart::new(uart::UART1, sysctl::SYSCLK_HZ, uart::Format::MODEM);
        // SAFETY: UART1's handler (`DefaultHandler`) only moves bytes into the ring inside a
        // critical section; unmasking its line cannot break a critical section elsewhere.
        unsafe { NVIC::unmask(uart::UART1.irq()) };
        log!("gsm: modem on UART1, {} baud", uart::Format::MODEM.baud);
        Modem::new(uart, ppp::Ppp::take().unwrap_or_else(|| fatal("PPP taken")))
    });

    #[cfg(feature = "rtu-test")]
    let rtu = RtuTest::boot();

    let mac: &'static mut eth::Mac = MAC.take();
    let mac_addr = eth::Mac::address();
    mac.init(mac_addr);
    // SAFETY: the MAC's handler (`DefaultHandler` below) only masks the MAC's own interrupt;
    // unmasking its line cannot break a critical section elsewhere.
    unsafe { NVIC::unmask(eth::Irq) };
    let rng = rng::Rng::new(&bench.identity.key, ctl.boot_counter(), mac_addr.0);
    log!("eth: MAC {}", mac_addr);
    // QEMU does not model the PHY; on the board the link state comes from the PHY's status
    // register over MII. Either way the controller learns it here.
    ctl.link(clock::now_ms(), Iface::Ethernet, true);

    App {
        ctl,
        flash,
        mac: Some(mac),
        eth: None,
        eth_buffers: Some((ETH_BUFFERS.take(), ETH_PAYLOAD.take())),
        leds: leds::StatusLed::new(),
        radio_led: radioled::RadioLed::new(),
        modem,
        gsm_query: None,
        relays: relays::Relays::new(),
        sensors: sensors::PoolModel::new(),
        rng,
        query: None,
        next_sample: 0,
        next_report: REPORT_MS,
        boot_stack: 0,
        reported_stack: 0,
        shown: Shown::default(),
        run_until: (bench.run_s > 0).then(|| u64::from(bench.run_s) * 1000),
        #[cfg(feature = "rtu-test")]
        rtu,
    }
}

/// Everything the loop owns.
struct App {
    ctl: &'static mut Ctl,
    flash: HostFileFlash,
    mac: Option<&'static mut eth::Mac>,
    eth: Option<EthLink>,
    eth_buffers: Option<(&'static mut LinkBuffers, &'static mut UdpPayload)>,
    leds: leds::StatusLed,
    radio_led: radioled::RadioLed,
    /// The GSM modem, if fitted.
    modem: Option<Modem>,
    /// The running DNS query over GSM: token, DNS id, our port, give-up time.
    gsm_query: Option<GsmQuery>,
    relays: relays::Relays,
    sensors: sensors::PoolModel,
    rng: rng::Rng,
    /// The running DNS query: the controller's token and the name.
    query: Option<(u16, heapless::String<64>)>,
    next_sample: u64,
    next_report: u64,
    /// Peak stack use during [`boot`].
    boot_stack: usize,
    /// Peak stack use of the loop last reported.
    reported_stack: usize,
    shown: Shown,
    run_until: Option<u64>,
    /// The test bench's channel map on the Modbus RTU bus.
    #[cfg(feature = "rtu-test")]
    rtu: RtuTest,
}

/// A DNS query over GSM in flight.
#[derive(Clone, Copy)]
struct GsmQuery {
    /// The controller's token.
    token: u16,
    /// DNS message id.
    id: u16,
    /// Our UDP port.
    port: u16,
    /// Give up at.
    deadline: u64,
}

/// What the console last showed of the controller, to log changes only.
#[derive(Default, PartialEq, Eq, Clone, Copy)]
struct Shown {
    connected: Option<u8>,
    /// The interface the controller uses (`true`: GSM).
    gsm: bool,
    config_version: u32,
    sessions: u32,
    hellos: u32,
    acked: u32,
    sent: u32,
    dead: u32,
    failed_passes: u32,
    ignored: u32,
}

// The loop's steps stay out of line: inlined into `main` their locals would add up in one
// frame that lives forever, instead of taking turns on the stack.
impl App {
    /// Moves frames, and turns what happened on the link into controller events.
    #[inline(never)]
    fn network(&mut self, now: u64, rx: &mut [u8; ppp::FRAME_BUF]) {
        self.gsm(now, rx);
        let Some(link) = self.eth.as_mut() else {
            return;
        };
        let pending = eth::Mac::rx_pending();
        if pending {
            // When frames arrive is not known off the wire: stir it into the generator.
            self.rng.mix(cortex_m::peripheral::SYST::get_current());
        }
        match link.poll(Instant::from_millis(now as i64)) {
            Some(LinkEvent::Up(s)) => {
                let dhcp = link.is_dhcp();
                log!(
                    "eth: {} {} gateway {} dns {}",
                    if dhcp { "DHCP lease" } else { "fixed IP" },
                    s.address,
                    Opt(s.gateway),
                    Opt(s.dns)
                );
                self.ctl
                    .ip_configured(now, Iface::Ethernet, ip_info(s, dhcp));
            }
            Some(LinkEvent::Down) => {
                log!("eth: no IP settings");
                self.ctl.ip_lost(now, Iface::Ethernet);
            }
            None => {}
        }
        if let Some((token, name)) = &self.query {
            if let Some(result) = link.resolve_result() {
                match result {
                    Ok(a) => log!("dns: {} -> {}", name, a),
                    Err(e) => log!("dns: {} failed ({:?})", name, e),
                }
                self.ctl
                    .dns_answer(now, *token, result.ok().map(|a| a.octets()));
                self.query = None;
            }
        }
        self.receive(now, rx);
        eth::Mac::arm_rx_interrupt();
    }

    /// Hands the received datagrams to the controller. Out of line, apart from the link's poll:
    /// the controller's decryption and smoltcp's frame processing are the two deepest uses of
    /// the loop's stack, and must take turns rather than add up in one frame.
    #[inline(never)]
    fn receive(&mut self, now: u64, rx: &mut [u8; ppp::FRAME_BUF]) {
        let Some(link) = self.eth.as_mut() else {
            return;
        };
        while link.can_recv() {
            if let Some(m) = self.modem.as_mut() {
                // The buffer holds part of a PPP frame: give it up (a lost frame, like a line
                // error; PPP and the protocol retransmit) rather than stall Ethernet.
                if m.ppp().mid_frame() {
                    m.ppp().abort_frame(rx);
                }
            }
            let Some((n, from)) = link.recv(rx) else {
                break;
            };
            let IpAddress::Ipv4(addr) = from.addr;
            let port = link.port();
            self.ctl.receive(
                now,
                Iface::Ethernet,
                Endpoint {
                    addr: addr.octets(),
                    port: from.port,
                },
                port,
                &mut rx[..n],
            );
        }
    }

    /// The modem: AT progress, PPP, radio state, datagrams and DNS answers over GSM.
    #[inline(never)]
    fn gsm(&mut self, now: u64, rx: &mut [u8; ppp::FRAME_BUF]) {
        let Some(m) = self.modem.as_mut() else {
            return;
        };
        loop {
            let gsm = &self.ctl.config().1.gsm;
            let Some(event) = m.poll(now, rx, &gsm.apn, &gsm.login, &gsm.password) else {
                break;
            };
            match event {
                ModemEvent::IpUp(ip) => self.ctl.ip_configured(
                    now,
                    Iface::Gsm,
                    IpInfo {
                        ip: ip.address.octets(),
                        netmask: [255; 4],
                        gateway: [0; 4],
                        dns: ip.dns.map_or([0; 4], |d| d.octets()),
                        dhcp: false,
                    },
                ),
                ModemEvent::IpDown => {
                    self.gsm_query = None;
                    self.ctl.ip_lost(now, Iface::Gsm);
                }
                ModemEvent::Datagram(d) => {
                    let payload = &mut rx[d.payload.clone()];
                    match self.gsm_query {
                        Some(q) if d.from.1 == 53 && d.to_port == q.port => {
                            match ppp::dns_answer(payload, q.id) {
                                Ok(None) => {}
                                answer => {
                                    let addr = answer.ok().flatten();
                                    match addr {
                                        Some(a) => log!("dns: {} -> {} (GSM)", q.token, a),
                                        None => log!("dns: query {} failed (GSM)", q.token),
                                    }
                                    self.gsm_query = None;
                                    self.ctl.dns_answer(now, q.token, addr.map(|a| a.octets()));
                                }
                            }
                        }
                        _ => self.ctl.receive(
                            now,
                            Iface::Gsm,
                            Endpoint {
                                addr: d.from.0.octets(),
                                port: d.from.1,
                            },
                            d.to_port,
                            payload,
                        ),
                    }
                }
            }
        }
        if let Some((radio, signal)) = m.radio_changed() {
            self.radio_led.set(radio, signal, now);
            self.ctl.modem_state(now, radio, signal);
        }
        if let Some(q) = self.gsm_query {
            if now >= q.deadline {
                log!("dns: query {} timed out (GSM)", q.token);
                self.gsm_query = None;
                self.ctl.dns_answer(now, q.token, None);
            }
        }
    }
}

/// Sends a DNS query for `name` over GSM; `false` if it cannot be sent. A free function: it runs
/// while the controller's action (and the name in it) is borrowed.
#[inline(never)]
fn gsm_resolve(
    modem: &mut Option<Modem>,
    rng: &mut rng::Rng,
    query: &mut Option<GsmQuery>,
    now: u64,
    token: u16,
    name: &str,
) -> bool {
    {
        let Some(m) = modem.as_mut() else {
            return false;
        };
        let Some(dns) = m.ppp().ip().and_then(|i| i.dns) else {
            return false;
        };
        let mut q = [0u8; 96];
        let id = rng.next_u64() as u16;
        let port = 49_152 + (rng.next_u64() % 16_384) as u16;
        let Some(n) = ppp::dns_query(&mut q, id, name) else {
            return false;
        };
        let (ppp, uart) = m.link();
        if !ppp.send(uart, port, (dns, 53), &q[..n]) {
            return false;
        }
        log!("dns: asking for {} over GSM (query {})", name, token);
        *query = Some(GsmQuery {
            token,
            id,
            port,
            deadline: now + 5_000,
        });
        true
    }
}

impl App {
    #[inline(never)]
    fn sample(&mut self, now: u64) {
        if now < self.next_sample {
            return;
        }
        self.next_sample = now + SAMPLE_MS;
        let reading = self.sensors.sample(now, self.relays.bits());
        #[cfg(feature = "rtu-test")]
        self.rtu.bus.set_inputs(reading, self.relays.bits());
        self.ctl.sensor(now, reading);
    }

    /// Carries out the controller's actions, in order.
    #[inline(never)]
    fn act(&mut self, now: u64) {
        while let Some(action) = self.ctl.poll(now, &mut self.rng) {
            match action {
                Action::Send {
                    iface: Iface::Ethernet,
                    from_port,
                    to,
                    bytes,
                } => {
                    if let Some(link) = self.eth.as_mut() {
                        link.bind(from_port);
                        let to = IpEndpoint::new(Ipv4Address::from(to.addr).into(), to.port);
                        // A datagram that cannot be queued is lost like any UDP datagram; the
                        // protocol's retries cover it.
                        if let Err(e) = link.send(to, bytes) {
                            log!("udp: datagram to {} not sent ({:?})", to, e);
                        }
                        // Out at once: the socket's transmit buffer holds one datagram.
                        link.flush(Instant::from_millis(now as i64));
                    }
                }
                Action::Resolve {
                    iface: Iface::Ethernet,
                    token,
                    name,
                } => {
                    let mut n = heapless::String::new();
                    let _ = n.push_str(name);
                    match self.eth.as_mut().map(|l| {
                        l.cancel_resolve();
                        l.resolve(name)
                    }) {
                        Some(Ok(())) => self.query = Some((token, n)),
                        _ => {
                            log!("dns: cannot ask for {}", name);
                            self.ctl.dns_answer(now, token, None);
                            // The answer changed the controller's state: restart the action
                            // loop from there (the borrow of `action` ended above).
                        }
                    }
                }
                Action::ConfigureEthernet(setup) => self.configure_ethernet(now, setup),
                Action::Persist { slot, record } => match self.flash.write(slot, record) {
                    Ok(()) => log!("flash: slot {} written ({} bytes)", slot, record.len()),
                    Err(e) => log!("flash: slot {} write failed ({:?})", slot, e),
                },
                // Only a controller with a channel part asks; this one has none (the RAM for
                // split configurations comes with the flash log).
                Action::PersistChannels { .. } => {}
                Action::Led(pattern) => self.leds.set(pattern, now),
                Action::SetRelay { relay, on } => self.relays.set(relay, on),
                Action::Reset => {
                    log!("reset: requested by the controller");
                    cortex_m::peripheral::SCB::sys_reset();
                }
                Action::Send {
                    iface: Iface::Gsm,
                    from_port,
                    to,
                    bytes,
                } => {
                    let sent = self.modem.as_mut().is_some_and(|m| {
                        let (ppp, uart) = m.link();
                        ppp.send(
                            uart,
                            from_port,
                            (Ipv4Address::from(to.addr), to.port),
                            bytes,
                        )
                    });
                    if !sent {
                        log!("gsm: datagram not sent (no data connection)");
                    }
                }
                Action::Resolve {
                    iface: Iface::Gsm,
                    token,
                    name,
                } => {
                    if !gsm_resolve(
                        &mut self.modem,
                        &mut self.rng,
                        &mut self.gsm_query,
                        now,
                        token,
                        name,
                    ) {
                        log!("dns: cannot ask for {} over GSM", name);
                        self.ctl.dns_answer(now, token, None);
                    }
                }
                Action::ModemUp { .. } => match self.modem.as_mut() {
                    // The APN and credentials are read from the running configuration when the
                    // modem needs them (the action's borrow ends here).
                    Some(m) => m.up(now),
                    None => log!("gsm: no modem fitted, action ignored"),
                },
                Action::ModemDown => {
                    if let Some(m) = self.modem.as_mut() {
                        m.down(now);
                    }
                    self.gsm_query = None;
                }
            }
        }
        // Receive on the port the controller expects replies on.
        for (iface, port) in self.ctl.ports().into_iter().flatten() {
            if let (Iface::Ethernet, Some(link)) = (iface, self.eth.as_mut()) {
                link.bind(port);
            }
        }
    }

    #[inline(never)]
    fn configure_ethernet(&mut self, now: u64, setup: EthernetSetup) {
        let addressing = match setup {
            EthernetSetup::Dhcp => Addressing::Dhcp,
            EthernetSetup::Static(s) => Addressing::Static(IpSettings {
                address: smoltcp::wire::Ipv4Cidr::new(
                    Ipv4Address::from(s.ip),
                    u32::from_be_bytes(s.netmask).leading_ones() as u8,
                ),
                gateway: Some(Ipv4Address::from(s.gateway)),
                dns: Some(Ipv4Address::from(s.dns)),
            }),
        };
        match addressing {
            Addressing::Dhcp => log!("eth: configure DHCP"),
            Addressing::Static(s) => log!("eth: configure fixed IP {}", s.address),
        }
        if let Some(link) = self.eth.as_mut() {
            link.set_addressing(addressing);
            return;
        }
        if let (Some(mac), Some((buffers, payload))) = (self.mac.take(), self.eth_buffers.take()) {
            let hw = HardwareAddress::Ethernet(eth::Mac::address());
            let seed = self.rng.next_u64();
            self.eth = Some(Link::new(
                mac,
                hw,
                addressing,
                seed,
                buffers,
                payload,
                Instant::from_millis(now as i64),
            ));
        }
    }

    /// LEDs, progress lines, the stack report and the end of a bench run.
    #[inline(never)]
    fn housekeeping(&mut self, now: u64) {
        self.leds.poll(now);
        self.radio_led.poll(now);
        let st = *self.ctl.stats();
        let shown = Shown {
            connected: self
                .ctl
                .is_connected()
                .then(|| self.ctl.server_index().unwrap_or(0)),
            gsm: self.ctl.transport() == Iface::Gsm,
            config_version: self.ctl.config().0,
            sessions: st.sessions,
            hellos: st.hellos,
            acked: st.records_acked,
            sent: st.records_sent,
            dead: st.dead_servers,
            failed_passes: st.failed_passes,
            ignored: st.ignored,
        };
        if shown != self.shown {
            if shown.connected != self.shown.connected {
                match shown.connected {
                    Some(i) => log!(
                        "session: up with server #{} ({}) over {}",
                        i,
                        self.server_name(i),
                        match self.ctl.transport() {
                            Iface::Ethernet => "Ethernet",
                            Iface::Gsm => "GSM",
                        }
                    ),
                    None => log!("session: none"),
                }
            }
            if shown.gsm != self.shown.gsm {
                let st = self.ctl.stats();
                log!(
                    "transport: {} (failovers {} returns {})",
                    if shown.gsm { "GSM" } else { "Ethernet" },
                    st.failovers,
                    st.returns
                );
            }
            if shown.config_version != self.shown.config_version {
                let (v, c) = self.ctl.config();
                log!(
                    "config: version {} running (setpoint {} hysteresis {} log {} s){}",
                    v,
                    Centi(i32::from(c.thermostat.setpoint_cc)),
                    Centi(i32::from(c.thermostat.hysteresis_cc)),
                    c.log_interval_s,
                    FmtStatic(c.ethernet)
                );
            }
            log!(
                "stats: hellos {} sessions {} dead {} failed-passes {} records sent {} acked {} logged {} ignored {}",
                st.hellos,
                st.sessions,
                st.dead_servers,
                st.failed_passes,
                st.records_sent,
                st.records_acked,
                st.records_logged,
                st.ignored
            );
            self.shown = shown;
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_MS;
            self.report_stack(false);
        }
        if let Some(end) = self.run_until {
            if now >= end {
                log!("run: {} s elapsed, stopping", end / 1000);
                self.report_stack(true);
                semihosting::exit(true);
            }
        }
    }

    #[inline(never)]
    fn report_stack(&mut self, always: bool) {
        let run = stack::peak();
        if run >= stack::available() {
            // Every painted word was overwritten: the stack ran into the statics.
            fatal("stack overflow");
        }
        if always || run > self.reported_stack {
            self.reported_stack = run;
            log!(
                "stack: peak {} bytes (boot {}, loop {}) of {} available",
                run.max(self.boot_stack),
                self.boot_stack,
                run,
                stack::available()
            );
            if let Some(link) = self.eth.as_mut() {
                let st = link.device().stats();
                log!(
                    "eth: frames received {} sent {} dropped (too long) {}",
                    st.rx_frames,
                    st.tx_frames,
                    st.rx_oversized
                );
            }
        }
    }

    fn server_name(&self, i: u8) -> &str {
        let (_, cfg) = self.ctl.config();
        cfg.servers
            .get(usize::from(i))
            .map(|s| s.as_str())
            .unwrap_or("factory list")
    }

    /// Sleeps until the earliest deadline of anything in the loop, or until a frame arrives
    /// (the MAC's interrupt wakes the core; SysTick wakes it every 10 ms in any case).
    #[inline(never)]
    fn sleep(&mut self) {
        let mut until = self
            .ctl
            .poll_at()
            .min(self.next_sample)
            .min(self.next_report);
        if let Some(link) = self.eth.as_mut() {
            let now = Instant::from_millis(clock::now_ms() as i64);
            if let Some(t) = link.poll_at(now) {
                until = until.min(t.total_millis().max(0) as u64);
            }
        }
        if self.query.is_some() {
            // DNS results are picked up by polling the link: look again soon.
            until = until.min(clock::now_ms() + clock::TICK_MS as u64);
        }
        if let Some(t) = self.leds.poll_at() {
            until = until.min(t);
        }
        if let Some(t) = self.radio_led.poll_at() {
            until = until.min(t);
        }
        if let Some(t) = self.modem.as_ref().and_then(|m| m.poll_at()) {
            until = until.min(t);
        }
        if let Some(q) = &self.gsm_query {
            until = until.min(q.deadline);
        }
        if let Some(t) = self.run_until {
            until = until.min(t);
        }
        #[cfg(feature = "rtu-test")]
        {
            until = until.min(self.rtu.channels.poll_at());
            if let Some(t) = self.rtu.bus.poll_at_ms() {
                until = until.min(t);
            }
        }
        while clock::now_ms() < until {
            // Check and sleep with interrupts masked: a frame arriving between the check and
            // WFI leaves its interrupt pending, and WFI returns at once.
            let woke = cortex_m::interrupt::free(|_| {
                if eth::Mac::rx_pending() || uart::UART1.rx_pending() {
                    return true;
                }
                #[cfg(feature = "rtu-test")]
                if rtu::heard() {
                    return true;
                }
                cortex_m::asm::wfi();
                false
            });
            if woke {
                break;
            }
        }
    }
}

/// The controller: with its log buffer most of the RAM. `Controller::blank()` is all zero bytes,
/// so this sits in `.bss` (`scripts/firmware-size.sh` checks that) and costs no flash; `boot`
/// powers it up in place.
static CONTROLLER: ConstStaticCell<Ctl> = ConstStaticCell::new(Controller::blank());
/// The MAC's two frame buffers.
static MAC: ConstStaticCell<eth::Mac> = ConstStaticCell::new(eth::Mac::new());
/// The Ethernet link's socket bookkeeping and UDP payload buffers.
static ETH_BUFFERS: ConstStaticCell<LinkBuffers> = ConstStaticCell::new(LinkBuffers::new());
static ETH_PAYLOAD: ConstStaticCell<UdpPayload> = ConstStaticCell::new(UdpPayload::new());
/// The loop's receive buffer: one datagram, decrypted in place by the controller.
/// Also the PPP frame buffer (a datagram + IPv4/UDP + PPP header and FCS): a GSM datagram is
/// decrypted where its frame landed; the Ethernet path uses the buffer between PPP frames.
static RX: ConstStaticCell<[u8; ppp::FRAME_BUF]> = ConstStaticCell::new([0; ppp::FRAME_BUF]);

fn ip_info(s: IpSettings, dhcp: bool) -> IpInfo {
    let mask = if s.address.prefix_len() == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(s.address.prefix_len()))
    };
    IpInfo {
        ip: s.address.address().octets(),
        netmask: mask.to_be_bytes(),
        gateway: s.gateway.map_or([0; 4], |g| g.octets()),
        dns: s.dns.map_or([0; 4], |d| d.octets()),
        dhcp,
    }
}

struct Opt<T>(Option<T>);
impl<T: core::fmt::Display> core::fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// Hundredths as a decimal number.
struct Centi(i32);
impl core::fmt::Display for Centi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let v = self.0.unsigned_abs();
        write!(f, "{}{}.{:02}", sign, v / 100, v % 100)
    }
}

/// `, fixed IP A/P stored`, or nothing for DHCP.
struct FmtStatic(Option<tek_controller::StaticIp>);
impl core::fmt::Display for FmtStatic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(s) => write!(
                f,
                ", fixed IP {}/{} stored",
                Ipv4Address::from(s.ip),
                u32::from_be_bytes(s.netmask).leading_ones()
            ),
            None => Ok(()),
        }
    }
}

/// The test bench's channel map (`rtu-test`): one bus, 19200 baud 8E1, 200 ms timeout; an
/// Eastron SDM630 at address 1 (input registers, f32 high word first) and a ControlBox TB260
/// at 2 (holding register 0, i16 in 0.1 degC), and a board input:
/// 0 voltage L1 (30001) x10 -> 0.1 V, 1 total power (30053) -> W, 2 total energy (30343)
/// x1000 -> Wh, 3 temperature x10 -> 0.01 degC, 4 board input 2 (water, 0.01 degC).
#[cfg(feature = "rtu-test")]
#[rustfmt::skip]
const RTU_TEST_MAP: [u8; 106] = [
    1, 1, 5,
    1, 1, 0, 200, // 19200 baud, even parity, 200 ms
    1, 7, 0, 1, 4, 0x00, 0x00, 4, 0,  0, 0, 0, 10,  0, 1,  0, 0, 0, 0,  5, 0xFF,
    1, 7, 0, 1, 4, 0x00, 0x34, 4, 0,  0, 0, 0, 1,   0, 1,  0, 0, 0, 0,  1, 0,
    1, 7, 0, 1, 4, 0x01, 0x56, 4, 0,  0, 0, 0x03, 0xE8,  0, 1,  0, 0, 0, 0,  2, 0,
    1, 7, 0, 2, 3, 0x00, 0x00, 1, 0,  0, 0, 0, 10,  0, 1,  0, 0, 0, 0,  3, 0xFE,
    2, 1, 2,                          0, 0, 0, 1,   0, 1,  0, 0, 0, 0,  3, 0xFE,
];
/// Bytes and channels the test map may have.
#[cfg(feature = "rtu-test")]
type RtuChannels = tek_controller::channels::Channels<{ RTU_TEST_MAP.len() }, 5>;

/// The `rtu-test` bench: [`RTU_TEST_MAP`] sampled every 2 s over [`rtu::BoardBus`], one retry
/// per read, every sample and every change of the fault counters on the console.
#[cfg(feature = "rtu-test")]
struct RtuTest {
    channels: RtuChannels,
    bus: rtu::BoardBus,
}

#[cfg(feature = "rtu-test")]
impl RtuTest {
    fn boot() -> RtuTest {
        sysctl::enable_uart(sysctl::uart_gate::UART2);
        let bus = rtu::BoardBus::new(sysctl::SYSCLK_HZ);
        // SAFETY: UART2's handler (`DefaultHandler`) only moves bytes into its ring and notes
        // the time inside a critical section; unmasking its line cannot break one elsewhere.
        unsafe { NVIC::unmask(uart::UART2.irq()) };
        let now = clock::now_ms();
        let mut channels = RtuChannels::new(now);
        if let Err(e) = channels.set_map(&RTU_TEST_MAP, &[], now) {
            log!("fatal: rtu test map: {}", e);
            semihosting::exit(false);
        }
        channels.sample_every_ms = 2_000;
        channels.modbus_retries = 1;
        log!(
            "rtu: Modbus RTU master on UART2, {} channels, sample every {} ms, {} retry",
            channels.count(),
            channels.sample_every_ms,
            channels.modbus_retries
        );
        RtuTest { channels, bus }
    }

    /// Sends a queued request when the line is quiet, advances the sample, logs what it gave.
    #[inline(never)]
    fn poll(&mut self, now: u64) {
        self.bus.poll();
        if self.channels.poll(now, &mut self.bus) {
            log!(
                "rtu: sample {}:{} (requests {})",
                self.channels.samples(),
                RtuValues(&self.channels),
                self.bus.sent
            );
        }
        if self.channels.faults_changed() {
            self.channels.faults_reported();
            log!("rtu: faults{}", RtuFaults(&self.channels));
        }
    }
}

/// ` v0 v1 ...`, `none` for a channel without value.
#[cfg(feature = "rtu-test")]
struct RtuValues<'a>(&'a RtuChannels);
#[cfg(feature = "rtu-test")]
impl core::fmt::Display for RtuValues<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for ch in 0..self.0.count() {
            write!(f, " {}", Opt(self.0.value(ch)))?;
        }
        Ok(())
    }
}

/// ` chN xCOUNT LAST` per channel with failures.
#[cfg(feature = "rtu-test")]
struct RtuFaults<'a>(&'a RtuChannels);
#[cfg(feature = "rtu-test")]
impl core::fmt::Display for RtuFaults<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut entries = [tek_proto::channel::faults::FaultEntry {
            channel: 0,
            errors: 0,
            last: tek_proto::channel::faults::Fault::Timeout,
        }; 5];
        let n = self.0.faults(&mut entries);
        for e in &entries[..n] {
            write!(f, " ch{} x{} {:?}", e.channel, e.errors, e.last)?;
        }
        Ok(())
    }
}

fn fatal(why: &str) -> ! {
    log!("fatal: {}", why);
    semihosting::exit(false)
}

fn fatal_args(e: bench::BenchError) -> ! {
    log!("fatal: command line: {}", e);
    semihosting::exit(false)
}

/// Interrupts without a handler of their own. Only the MAC's, the modem UART's and (in the
/// `rtu-test` build) the Modbus UART's are enabled.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == eth::IRQ as i16 {
        eth::on_interrupt();
        return;
    }
    if uart::UART1.is_irq(irqn) {
        uart::UART1.on_interrupt();
        return;
    }
    #[cfg(feature = "rtu-test")]
    if uart::UART2.is_irq(irqn) {
        rtu::on_interrupt();
        return;
    }
    fatal("unexpected interrupt");
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    cortex_m_semihosting::hprintln!("fatal: hard fault at pc {:#010x}", frame.pc());
    semihosting::exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m_semihosting::hprintln!("fatal: panic: {}", info);
    semihosting::exit(false)
}
