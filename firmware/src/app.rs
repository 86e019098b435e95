//! Everything the loop owns ([`App`]) and the loop's steps: the network (Ethernet and GSM),
//! samples, the controller's actions, housekeeping and the sleep until the next event. `main`
//! builds it at boot and calls the steps in turn.

use crate::console::Opt;
use crate::modem::{Modem, ModemEvent};
use crate::net::{Addressing, IpSettings, Link, LinkBuffers, LinkEvent, UdpPayload};
#[cfg(feature = "rtu-test")]
use crate::rtu_test::RtuTest;
use crate::sensors::Sensors;
use crate::storage::{ChannelSlots, Flash, HostFileFlash};
use crate::{
    channels, clock, eth, fatal, leds, log, ppp, radioled, relays, rng, rtu, semihosting, sensors,
    stack, uart, Ctl, EthLink, REPORT_MS, SAMPLE_MS,
};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpEndpoint, Ipv4Address};
use tek_controller::record_log::WideSink;
use tek_controller::{Action, Endpoint, EthernetSetup, Iface, IpInfo};

/// Everything the loop owns.
pub(crate) struct App {
    pub(crate) ctl: &'static mut Ctl,
    pub(crate) flash: HostFileFlash,
    /// The channel part's two record slots.
    pub(crate) channel_slots: ChannelSlots,
    /// The board's inputs and its Modbus RTU line (UART2), which the channel map reads.
    pub(crate) bus: rtu::BoardBus,
    /// What the console last showed of the channel part.
    pub(crate) channels_shown: channels::Shown,
    pub(crate) mac: Option<&'static mut eth::Mac>,
    pub(crate) eth: Option<EthLink>,
    pub(crate) eth_buffers: Option<(&'static mut LinkBuffers, &'static mut UdpPayload)>,
    pub(crate) leds: leds::StatusLed,
    pub(crate) radio_led: radioled::RadioLed,
    /// The GSM modem, if fitted.
    pub(crate) modem: Option<Modem>,
    /// The running DNS query over GSM: token, DNS id, our port, give-up time.
    pub(crate) gsm_query: Option<GsmQuery>,
    pub(crate) relays: relays::Relays,
    pub(crate) sensors: sensors::PoolModel,
    pub(crate) rng: rng::Rng,
    /// The running DNS query: the controller's token and the name.
    pub(crate) query: Option<(u16, heapless::String<64>)>,
    pub(crate) next_sample: u64,
    pub(crate) next_report: u64,
    /// Peak stack use during [`boot`].
    pub(crate) boot_stack: usize,
    /// Peak stack use of the loop last reported.
    pub(crate) reported_stack: usize,
    pub(crate) shown: Shown,
    /// Records logged when the last one was shown.
    pub(crate) logged: u32,
    pub(crate) run_until: Option<u64>,
    /// The test bench's fixed channel map on the Modbus RTU bus (beside the controller's).
    #[cfg(feature = "rtu-test")]
    pub(crate) rtu: RtuTest,
}

/// A DNS query over GSM in flight.
#[derive(Clone, Copy)]
pub(crate) struct GsmQuery {
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
pub(crate) struct Shown {
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
    pub(crate) fn network(&mut self, now: u64, rx: &mut [u8; ppp::FRAME_BUF]) {
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
    /// The board's simulated pool every [`SAMPLE_MS`] (its inputs), a queued Modbus request
    /// out when the line is quiet, and the controller's channel map advanced: a sample starts
    /// when due, and a Modbus answer is taken as soon as its bytes arrive. Never waits.
    #[inline(never)]
    pub(crate) fn sample(&mut self, now: u64) {
        if now >= self.next_sample {
            self.next_sample = now + SAMPLE_MS;
            let reading = self.sensors.sample(now, self.relays.bits());
            self.bus.set_inputs(reading, self.relays.bits());
        }
        self.bus.poll();
        self.ctl.sample(now, &mut self.bus);
        self.bus.poll();
    }

    /// Carries out the controller's actions, in order.
    #[inline(never)]
    pub(crate) fn act(&mut self, now: u64) {
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
                Action::PersistChannels { slot, record } => {
                    match self.channel_slots.write(slot, &record) {
                        Ok(n) => log!("flash: channel slot {} written ({} bytes)", slot, n),
                        Err(e) => log!("flash: channel slot {} write failed ({:?})", slot, e),
                    }
                }
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
    pub(crate) fn housekeeping(&mut self, now: u64) {
        self.leds.poll(now);
        self.radio_led.poll(now);
        self.channels_shown.update(self.ctl);
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
        if st.records_logged != self.logged {
            self.logged = st.records_logged;
            // Every record, for the bench's power-cut test (scripts/flashlog-e2e.sh), which
            // compares them with what the server stores. A wide record (a split configuration
            // runs) holds the sample just completed, which the part still shows.
            if let Some(part) = self
                .ctl
                .channel_part()
                .filter(|p| p.split_version().is_some())
            {
                // Just pushed: the flash log's newest record, named as the server will store it
                // (a boot's records are numbered from 0, pool and wide alike).
                if let Some((boot, seq)) = self.ctl.log().last_logged() {
                    log!(
                        "log: wide record {}/{}: {}",
                        boot,
                        seq,
                        channels::Values(part)
                    );
                }
            } else if let Some(r) = self.ctl.last_record() {
                log!(
                    "log: record {}/{} power {} energy {} water {} air {} relays {}",
                    self.ctl.boot_counter(),
                    st.records_logged - 1,
                    r.power_w,
                    r.energy_wh,
                    r.water_cc,
                    r.air_cc,
                    r.relays
                );
            }
        }
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
    pub(crate) fn report_stack(&mut self, always: bool) {
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
    pub(crate) fn sleep(&mut self) {
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
        until = until.min(self.ctl.sample_at());
        if let Some(t) = self.bus.poll_at_ms() {
            until = until.min(t);
        }
        #[cfg(feature = "rtu-test")]
        {
            until = until.min(self.rtu.channels.poll_at());
        }
        while clock::now_ms() < until {
            // Check and sleep with interrupts masked: a frame arriving between the check and
            // WFI leaves its interrupt pending, and WFI returns at once.
            let woke = cortex_m::interrupt::free(|_| {
                if eth::Mac::rx_pending() || uart::UART1.rx_pending() {
                    return true;
                }
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
pub(crate) struct FmtStatic(pub(crate) Option<tek_controller::StaticIp>);
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
