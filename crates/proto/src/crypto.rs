//! Keys and the two primitives the protocol uses, both from RustCrypto:
//!
//! * **AES-CMAC** (RFC 4493) as the PRF of a NIST SP 800-108 counter-mode KDF, and as the MAC of
//!   the two handshake datagrams (full 16-byte tags: they are rare, so size does not matter).
//! * **AES-128-CCM** (RFC 3610) with an 8-byte tag and a 13-byte nonce for session datagrams —
//!   the parameters of COSE's AES-CCM-16-64-128, used by OSCORE on constrained devices. CCM needs
//!   only the AES block function, which a Cortex-M3 runs well in software; GCM's GHASH would need a
//!   carry-less multiply the chip does not have.
//!
//! The device key is only ever used as a KDF key: every key that touches a datagram is derived.

use aes::Aes128;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U13, U8};
use cmac::{Cmac, Mac};

/// Length of every key in the protocol (AES-128).
pub const KEY_LEN: usize = 16;
/// Length of the CCM tag on session datagrams.
pub const TAG_LEN: usize = 8;
/// Length of the CCM nonce.
pub const NONCE_LEN: usize = 13;
/// Length of the CMAC tag on handshake datagrams.
pub const HANDSHAKE_TAG_LEN: usize = 16;

type Ccm8 = ccm::Ccm<Aes128, U8, U13>;

/// A 128-bit AES key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// Parses 32 hexadecimal digits (either case).
    pub fn from_hex(hex: &str) -> Option<Key> {
        let bytes = hex.as_bytes();
        if bytes.len() != KEY_LEN * 2 {
            return None;
        }
        let mut out = [0u8; KEY_LEN];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Key(out))
    }

    /// Writes the key as 32 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> [u8; KEY_LEN * 2] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; KEY_LEN * 2];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 0x0F) as usize];
        }
        out
    }
}

fn cmac(key: &Key) -> Cmac<Aes128> {
    // A 16-byte key is always a valid AES-128 key.
    <Cmac<Aes128> as KeyInit>::new(&key.0.into())
}

/// NIST SP 800-108r1 KDF in counter mode with AES-CMAC as PRF, for one 128-bit output block:
/// `K_out = CMAC(K_in, 0x01 || label || 0x00 || context || 0x0080)`.
pub fn kdf(key: &Key, label: &[u8], context: &[u8]) -> Key {
    let mut mac = cmac(key);
    mac.update(&[0x01]);
    mac.update(label);
    mac.update(&[0x00]);
    mac.update(context);
    mac.update(&[0x00, 0x80]);
    Key(mac.finalize().into_bytes().into())
}

/// A device's long-term key together with the handshake key derived from it, so a server holding
/// many devices derives `K_hs` once per device instead of once per Hello.
#[derive(Clone, Debug)]
pub struct DeviceKeys {
    master: Key,
    handshake: Key,
}

impl DeviceKeys {
    /// All-zero keys, not derived from anything: a placeholder for a device's state that is
    /// allocated statically (a `const` cannot run the key derivation) and gets its real keys from
    /// [`DeviceKeys::new`] at boot. Never use it to seal or check anything.
    pub const PLACEHOLDER: DeviceKeys = DeviceKeys {
        master: Key([0; KEY_LEN]),
        handshake: Key([0; KEY_LEN]),
    };

    /// Derives the handshake key from the device's 128-bit key.
    pub fn new(master: Key) -> DeviceKeys {
        let handshake = kdf(&master, LABEL_HANDSHAKE, &[]);
        DeviceKeys { master, handshake }
    }

    /// The device's long-term key (only ever used as a KDF key).
    pub fn master(&self) -> &Key {
        &self.master
    }

    /// `K_hs`, the key of the handshake tags.
    pub fn handshake(&self) -> &Key {
        &self.handshake
    }
}

/// Label of the handshake key: `K_hs = kdf(K_device, "tek hs", "")`.
pub const LABEL_HANDSHAKE: &[u8] = b"tek hs";
/// Label of the device-to-server session key.
pub const LABEL_D2S: &[u8] = b"tek d2s";
/// Label of the server-to-device session key.
pub const LABEL_S2D: &[u8] = b"tek s2d";

/// Computes the 16-byte CMAC of the concatenation of `parts` under `key`.
pub fn handshake_tag(key: &Key, parts: &[&[u8]]) -> [u8; HANDSHAKE_TAG_LEN] {
    let mut mac = cmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Checks a handshake tag in constant time.
pub fn handshake_tag_ok(key: &Key, parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = cmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Checks the first `prefix.len()` bytes of a handshake tag in constant time (a truncated
/// tag, such as a configuration digest).
pub fn handshake_tag_prefix_ok(key: &Key, parts: &[&[u8]], prefix: &[u8]) -> bool {
    let mut mac = cmac(key);
    for part in parts {
        mac.update(part);
    }
    mac.verify_truncated_left(prefix).is_ok()
}

/// The AEAD failed to authenticate a datagram (or was asked to seal more than it can).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

/// Encrypts `buf` in place and returns the tag. `aad` is authenticated but not encrypted.
pub fn seal(
    key: &Key,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], AeadError> {
    let cipher = Ccm8::new(&key.0.into());
    cipher
        .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
        .map(Into::into)
        .map_err(|_| AeadError)
}

/// Decrypts `buf` in place if `tag` authenticates it and `aad`; on failure `buf` is left as
/// garbage the caller must discard.
pub fn open(
    key: &Key,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let cipher = Ccm8::new(&key.0.into());
    cipher
        .decrypt_inout_detached(&(*nonce).into(), aad, buf.into(), &(*tag).into())
        .map_err(|_| AeadError)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> std::vec::Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4493 section 4, examples 1 and 2: the PRF is wired to the right primitive.
    #[test]
    fn cmac_rfc4493_vectors() {
        let key = Key::from_hex("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        assert_eq!(
            handshake_tag(&key, &[]).to_vec(),
            h("bb1d6929e95937287fa37d129b756746")
        );
        let msg = h("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(
            handshake_tag(&key, &[&msg[..4], &msg[4..]]).to_vec(),
            h("070a16b46b4d4144f79bdd9dd04a287c")
        );
        assert!(handshake_tag_ok(
            &key,
            &[&msg],
            &h("070a16b46b4d4144f79bdd9dd04a287c")
        ));
        assert!(!handshake_tag_ok(
            &key,
            &[&msg],
            &h("070a16b46b4d4144f79bdd9dd04a287d")
        ));
    }

    /// RFC 3610 packet vector #1 uses an 8-byte tag and a 13-byte nonce: exactly our parameters.
    #[test]
    fn ccm_rfc3610_packet_vector_1() {
        let key = Key::from_hex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf").unwrap();
        let nonce: [u8; 13] = h("00000003020100a0a1a2a3a4a5").try_into().unwrap();
        let aad = h("0001020304050607");
        let mut buf = h("08090a0b0c0d0e0f101112131415161718191a1b1c1d1e");
        let tag = seal(&key, &nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, h("588c979a61c663d2f066d0c2c0f989806d5f6b61dac384"));
        assert_eq!(tag.to_vec(), h("17e8d12cfdf926e0"));
        open(&key, &nonce, &aad, &mut buf, &tag).unwrap();
        assert_eq!(buf, h("08090a0b0c0d0e0f101112131415161718191a1b1c1d1e"));
    }

    #[test]
    fn open_rejects_any_flipped_bit() {
        let key = Key([7; 16]);
        let nonce = [1; 13];
        let mut buf = *b"hello, pool";
        let tag = seal(&key, &nonce, b"hdr", &mut buf).unwrap();
        let sealed = buf;
        for i in 0..buf.len() * 8 {
            let mut b = sealed;
            b[i / 8] ^= 1 << (i % 8);
            assert_eq!(open(&key, &nonce, b"hdr", &mut b, &tag), Err(AeadError));
        }
        let mut b = sealed;
        assert_eq!(open(&key, &nonce, b"hdx", &mut b, &tag), Err(AeadError));
    }

    #[test]
    fn key_hex_round_trip_and_debug_redacts() {
        let key = Key::from_hex("00112233445566778899AABBCCDDEEFF").unwrap();
        assert_eq!(&key.to_hex(), b"00112233445566778899aabbccddeeff");
        assert!(Key::from_hex("0011").is_none());
        assert!(Key::from_hex("zz112233445566778899aabbccddeeff").is_none());
        let shown = std::format!("{key:?}");
        assert!(!shown.contains("0011"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
