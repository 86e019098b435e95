//! The queue of actions the parts of the controller ask for, other than datagrams: what
//! `Controller::poll` hands the host first, in order. An effect holds no borrowed data (a DNS
//! name, the modem's settings and a flash record are looked up or encoded when it is handed
//! out), so the parts can queue them while the controller is borrowed piecemeal.

use crate::{EthernetSetup, Iface, Led};
use heapless::Deque;

/// An action waiting to be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Resolve the name of server `server` over `iface`.
    Resolve {
        iface: Iface,
        token: u16,
        server: u8,
    },
    ConfigureEthernet(EthernetSetup),
    ModemUp,
    ModemDown,
    SetRelay {
        relay: u8,
        on: bool,
    },
    /// Write the flash record.
    Persist,
    /// Write the channel part's flash record.
    PersistChannels,
    Led(Led),
}

/// The queue, with the DNS token counter (a token names one Resolve).
#[derive(Debug)]
pub(crate) struct Effects {
    queue: Deque<Effect, 24>,
    /// A Persist is queued (they coalesce: the record is encoded when handed out).
    persist_queued: bool,
    /// A PersistChannels is queued (they coalesce too).
    channels_queued: bool,
    dns_token: u16,
}

impl Effects {
    /// The all-zero placeholder of `Controller::blank`.
    pub const BLANK: Effects = Effects {
        queue: Deque::new(),
        persist_queued: false,
        channels_queued: false,
        dns_token: 0,
    };

    /// Power-up: nothing queued.
    pub fn start(&mut self) {
        let Effects {
            queue,
            persist_queued,
            channels_queued,
            dns_token,
        } = self;
        queue.clear();
        *persist_queued = false;
        *channels_queued = false;
        *dns_token = 0;
    }

    /// Queues `e`.
    pub fn push(&mut self, e: Effect) {
        // Bounded by construction (coalesced persist/LED, at most eight relays, a handful of
        // network effects between polls); dropping one if it were ever full is safer than a
        // panic, and the next state change re-issues it.
        let _ = self.queue.push_back(e);
    }

    /// Queues a flash write, unless one is queued already.
    pub fn persist(&mut self) {
        if !self.persist_queued {
            self.persist_queued = true;
            self.push(Effect::Persist);
        }
    }

    /// Queues a write of the channel part's record, unless one is queued already.
    pub fn persist_channels(&mut self) {
        if !self.channels_queued {
            self.channels_queued = true;
            self.push(Effect::PersistChannels);
        }
    }

    /// Queues a DNS query for server `server` over `iface`; returns its token.
    pub fn resolve(&mut self, iface: Iface, server: u8) -> u16 {
        self.dns_token = self.dns_token.wrapping_add(1);
        let token = self.dns_token;
        self.push(Effect::Resolve {
            iface,
            token,
            server,
        });
        token
    }

    /// Configures Ethernet with fixed settings, or DHCP for `None`.
    #[inline(always)]
    pub fn configure_ethernet(&mut self, fixed: Option<crate::StaticIp>) {
        self.push(Effect::ConfigureEthernet(match fixed {
            Some(s) => EthernetSetup::Static(s),
            None => EthernetSetup::Dhcp,
        }));
    }

    /// The next effect to hand out.
    pub fn pop(&mut self) -> Option<Effect> {
        let e = self.queue.pop_front();
        match e {
            Some(Effect::Persist) => self.persist_queued = false,
            Some(Effect::PersistChannels) => self.channels_queued = false,
            _ => {}
        }
        e
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many effects are queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}
