//! One face over rumqttc's two clients: MQTT 3.1.1 (`rumqttc`) and MQTT 5 (`rumqttc::v5`), so
//! that the tasks in [`super::client`] and [`super::commands`] are written once. Only what tek
//! uses: publish (QoS 1), subscribe, disconnect, and the connection events.

use rumqttc::{QoS, Transport};
use serde::Deserialize;
use std::time::Duration;

/// The protocol version spoken to the broker (`[mqtt] protocol`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// What the options of either version need.
pub(crate) struct Settings {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keepalive: Duration,
    pub credentials: Option<(String, String)>,
    pub transport: Transport,
}

/// The sending half.
#[derive(Clone)]
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The connection, driven by polling.
pub(crate) enum Connection {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What one poll of the connection gave.
pub(crate) enum Polled {
    /// The broker accepted the connection.
    Connected,
    /// A message arrived on a subscribed topic.
    Message { topic: String, payload: Vec<u8> },
    /// Anything else that went well.
    Other,
    /// The connection failed or broke; the next poll reconnects.
    Failed(String),
}

/// Largest packet either way (discovery documents are about 1 kB).
const MAX_PACKET: usize = 256 * 1024;
/// Requests the client queues before `publish` waits.
const CAPACITY: usize = 256;

/// A client and its connection.
pub(crate) fn new(protocol: Protocol, s: Settings) -> (Client, Connection) {
    match protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(s.client_id, s.host, s.port);
            o.set_keep_alive(s.keepalive);
            o.set_clean_session(true);
            o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
            if let Some((u, p)) = s.credentials {
                o.set_credentials(u, p);
            }
            o.set_transport(s.transport);
            let (c, l) = rumqttc::AsyncClient::new(o, CAPACITY);
            (Client::V311(c), Connection::V311(Box::new(l)))
        }
        Protocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(s.client_id, s.host, s.port);
            o.set_keep_alive(s.keepalive);
            o.set_clean_start(true);
            o.set_max_packet_size(Some(MAX_PACKET as u32));
            if let Some((u, p)) = s.credentials {
                o.set_credentials(u, p);
            }
            o.set_transport(s.transport);
            let (c, l) = rumqttc::v5::AsyncClient::new(o, CAPACITY);
            (Client::V5(c), Connection::V5(Box::new(l)))
        }
    }
}

impl Client {
    /// Publishes at QoS 1; waits while the client's queue is full.
    pub async fn publish(
        &self,
        topic: String,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes at QoS 1 without waiting (the connection must keep being polled).
    pub fn try_subscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Asks for a clean DISCONNECT.
    pub fn try_disconnect(&self) {
        let _ = match self {
            Client::V311(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

impl Connection {
    /// Drives the connection until its next event.
    pub async fn poll(&mut self) -> Polled {
        match self {
            Connection::V311(l) => match l.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => Polled::Connected,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Polled::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                },
                Ok(_) => Polled::Other,
                Err(e) => Polled::Failed(e.to_string()),
            },
            Connection::V5(l) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                match l.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => Polled::Connected,
                    Ok(rumqttc::v5::Event::Incoming(Packet::Publish(p))) => Polled::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    },
                    Ok(_) => Polled::Other,
                    Err(e) => Polled::Failed(e.to_string()),
                }
            }
        }
    }
}
