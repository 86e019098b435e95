//! End to end: `tek meter` on loopback ports, a serial connection as QEMU makes one, requests
//! built and answers checked by the controller's own Modbus client
//! (`tek_controller::modbus`): exact scripted values, exceptions, and each fault on command
//! seen as the controller's `Fault` — then `plug` brings the values back.

use std::time::Duration;

use tek_controller::modbus;
use tek_meter::cli::{serve, Config, MeterArgs};
use tek_meter::device::Model;
use tek_meter::frame::{Line, Parity};
use tek_proto::channel::faults::Fault;
use tek_proto::channel::map::{DataType, Function, ModbusRead, Raw, WordOrder};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long an answer may take before the test calls it "no answer" (the controller's bus
/// timeout plays this role on the device): far above a loopback answer (~0.1 ms), so a loaded
/// machine does not turn an answer into a timeout.
const NO_ANSWER: Duration = Duration::from_secs(1);
/// Bound on anything that should happen.
const T: Duration = Duration::from_secs(10);

const SCRIPT: &str = "\
# t   slave quantity     value
0     1     power_l1     1500.25
0     1     import_kwh   1234.5
0     2     voltage      230.5
0     3     temperature  21.7
1.5   1     power_l1     -250.5
";

fn reading(slave: u8, function: Function, register: u16, data_type: DataType) -> ModbusRead {
    ModbusRead {
        bus: 0,
        slave,
        function,
        register,
        data_type,
        word_order: WordOrder::HighFirst,
    }
}

fn power_l1() -> ModbusRead {
    reading(1, Function::Input, 0x0C, DataType::F32)
}
/// Scripted once: constant all along (unlike `power_l1`, which the script changes at 1.5 s).
fn import_kwh() -> ModbusRead {
    reading(1, Function::Input, 0x48, DataType::F32)
}
fn voltage() -> ModbusRead {
    reading(2, Function::Input, 0x00, DataType::F32)
}
fn temperature() -> ModbusRead {
    reading(3, Function::Holding, 0x00, DataType::I16)
}

struct Bench {
    serial: TcpStream,
    control: BufReader<TcpStream>,
    serial_addr: std::net::SocketAddr,
}

async fn start() -> Bench {
    // One file per test: the tests of this binary run in parallel.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("tek-meter-e2e-{}-{n}.script", std::process::id()));
    std::fs::write(&path, SCRIPT).unwrap();
    let args = MeterArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        slaves: vec![(1, Model::Sdm630), (2, Model::Sdm120), (3, Model::Tb260)],
        baud: 19200,
        parity: Parity::Even,
        script: Some(path.clone()),
    };
    let config = Config::from_args(&args).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        config.line,
        Line {
            baud: 19200,
            parity: Parity::Even
        }
    );
    let serial = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (serial_addr, ca) = (serial.local_addr().unwrap(), control.local_addr().unwrap());
    tokio::spawn(serve(serial, control, config));
    let serial = TcpStream::connect(serial_addr).await.unwrap();
    serial.set_nodelay(true).unwrap();
    Bench {
        serial,
        control: BufReader::new(TcpStream::connect(ca).await.unwrap()),
        serial_addr,
    }
}

impl Bench {
    /// One transaction as the controller runs it: its request, its answer (as long as
    /// `answer_len` says), its decoding; nothing within `NO_ANSWER` is a timeout.
    async fn read(&mut self, read: &ModbusRead) -> Result<Raw, Fault> {
        let request = modbus::request(read).unwrap();
        self.serial.write_all(&request).await.unwrap();
        self.answer(read).await
    }

    async fn answer(&mut self, read: &ModbusRead) -> Result<Raw, Fault> {
        let mut got = Vec::new();
        let mut b = [0u8; 64];
        let done = tokio::time::timeout(NO_ANSWER, async {
            while modbus::answer_len(read, &got).is_none_or(|n| got.len() < n) {
                let n = self.serial.read(&mut b).await.unwrap();
                assert!(n > 0, "meter closed the serial connection");
                got.extend_from_slice(&b[..n]);
            }
        })
        .await;
        match done {
            Err(_) if got.is_empty() => Err(Fault::Timeout),
            Err(_) => panic!("a partial answer {got:?}"),
            Ok(()) => modbus::decode(read, &got),
        }
    }

    async fn command(&mut self, line: &str) -> String {
        self.control
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut reply = String::new();
        tokio::time::timeout(T, self.control.read_line(&mut reply))
            .await
            .expect("control reply in time")
            .unwrap();
        reply.trim_end().to_string()
    }
}

#[tokio::test]
async fn scripted_values_reach_the_controller_exactly() {
    let mut b = start().await;
    assert_eq!(b.read(&power_l1()).await, Ok(Raw::Float(1500.25)));
    assert_eq!(
        b.read(&reading(1, Function::Input, 0x48, DataType::F32))
            .await,
        Ok(Raw::Float(1234.5))
    );
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
    assert_eq!(b.read(&temperature()).await, Ok(Raw::Int(217)));
    // Unscripted quantities come from the plant model: a plausible frequency.
    match b
        .read(&reading(1, Function::Input, 0x46, DataType::F32))
        .await
    {
        Ok(Raw::Float(hz)) => assert!((49.9..50.1).contains(&hz), "{hz}"),
        other => panic!("frequency: {other:?}"),
    }
    // The script's next entry, 1.5 s after the start.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(b.read(&power_l1()).await, Ok(Raw::Float(-250.5)));
    // Set on the control socket.
    assert_eq!(
        b.command("set 3 temperature -4.5").await,
        "ok: slave 3 temperature = -4.5"
    );
    assert_eq!(b.read(&temperature()).await, Ok(Raw::Int(-45)));
    // A failed measurement: a NaN float reaches the controller as "no value" (out of range),
    // never as a number; an integer register cannot carry one, so the meter refuses it.
    assert!(b.command("set 1 power_l1 nan").await.starts_with("ok"));
    assert_eq!(b.read(&power_l1()).await, Err(Fault::OutOfRange));
    assert_eq!(
        b.command("set 3 temperature nan").await,
        "error: NaN does not fit an i16 in tenths"
    );
    assert_eq!(b.read(&temperature()).await, Ok(Raw::Int(-45)));
}

#[tokio::test]
async fn an_endless_control_line_is_refused() {
    let mut b = start().await;
    // Past the 1 kB limit, and small enough to arrive in one read (so the meter closes with
    // nothing unread, a FIN rather than a reset that could swallow the reply).
    let flood = vec![b'x'; 1100];
    let _ = b.control.get_mut().write_all(&flood).await;
    let mut reply = String::new();
    tokio::time::timeout(T, b.control.read_line(&mut reply))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(reply, "error: line too long\n");
    // The bus goes on.
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
}

#[tokio::test]
async fn exceptions_and_silence_for_bad_requests() {
    let mut b = start().await;
    // A reserved register, a function the transmitter lacks.
    assert_eq!(
        b.read(&reading(1, Function::Input, 0x12, DataType::F32))
            .await,
        Err(Fault::Exception(2))
    );
    assert_eq!(
        b.read(&reading(3, Function::Input, 0x00, DataType::I16))
            .await,
        Err(Fault::Exception(1))
    );
    // Nobody at address 9; a broadcast is never answered.
    assert_eq!(
        b.read(&reading(9, Function::Input, 0, DataType::F32)).await,
        Err(Fault::Timeout)
    );
    assert_eq!(
        b.read(&reading(0, Function::Input, 0, DataType::F32)).await,
        Err(Fault::Timeout)
    );
    // Noise before a request: the meter resyncs and answers it.
    let request = modbus::request(&voltage()).unwrap();
    let noisy = [&[0x00, 0xFF, 0x42, 0x13][..], &request].concat();
    b.serial.write_all(&noisy).await.unwrap();
    assert_eq!(b.answer(&voltage()).await, Ok(Raw::Float(230.5)));
    // A request with a bad CRC: no answer.
    let mut bad = request.clone();
    bad[7] ^= 1;
    b.serial.write_all(&bad).await.unwrap();
    assert_eq!(b.answer(&voltage()).await, Err(Fault::Timeout));
    // Half a request, a pause far longer than 3.5 characters: the silence ended that frame;
    // the next whole request stands alone.
    b.serial.write_all(&request[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
    // Function 7 (read exception status) is 4 bytes, a length the framer cannot guess: only
    // the silence after it ends the frame, and it gets exception 1 (illegal function).
    let short = [
        1,
        7,
        tek_meter::frame::crc(&[1, 7])[0],
        tek_meter::frame::crc(&[1, 7])[1],
    ];
    b.serial.write_all(&short).await.unwrap();
    let mut got = [0u8; 5];
    tokio::time::timeout(T, b.serial.read_exact(&mut got))
        .await
        .expect("exception in time")
        .unwrap();
    let crc = tek_meter::frame::crc(&[1, 0x87, 1]);
    assert_eq!(got, [1, 0x87, 1, crc[0], crc[1]]);
}

#[tokio::test]
async fn faults_on_command_then_plug_brings_values_back() {
    let mut b = start().await;
    assert_eq!(b.command("mute 1").await, "ok: slave 1 muted");
    assert_eq!(b.read(&import_kwh()).await, Err(Fault::Timeout));
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
    assert_eq!(b.command("unmute 1").await, "ok: slave 1 unmuted");
    assert_eq!(b.read(&import_kwh()).await, Ok(Raw::Float(1234.5)));

    assert_eq!(
        b.command("corrupt 1").await,
        "ok: slave 1: next answer with a bad CRC"
    );
    assert_eq!(b.read(&import_kwh()).await, Err(Fault::Crc));
    assert_eq!(b.read(&import_kwh()).await, Ok(Raw::Float(1234.5)));
    assert!(b.command("corrupt 2 all").await.starts_with("ok"));
    assert_eq!(b.read(&voltage()).await, Err(Fault::Crc));
    assert_eq!(b.read(&voltage()).await, Err(Fault::Crc));
    assert_eq!(b.command("clear 2").await, "ok: slave 2 cleared");
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));

    assert!(b.command("exception 3 4").await.starts_with("ok"));
    assert_eq!(b.read(&temperature()).await, Err(Fault::Exception(4)));
    b.command("clear 3").await;
    assert_eq!(b.read(&temperature()).await, Ok(Raw::Int(217)));

    assert_eq!(b.command("unplug").await, "ok: bus unplugged");
    for r in [import_kwh(), voltage(), temperature()] {
        assert_eq!(b.read(&r).await, Err(Fault::Timeout));
    }
    assert_eq!(b.command("plug").await, "ok: bus plugged");
    assert_eq!(b.read(&import_kwh()).await, Ok(Raw::Float(1234.5)));
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
    assert_eq!(b.read(&temperature()).await, Ok(Raw::Int(217)));

    let status = b.command("status").await;
    assert!(
        status.starts_with("bus plugged; slave 1 sdm630 requests=6 answers=4"),
        "{status}"
    );
    assert!(status.contains("slave 3 tb260 requests=4 answers=3 temperature=21.7"));
    assert!(b.command("mute 12").await.starts_with("error: no slave 12"));
}

#[tokio::test]
async fn a_new_connection_replaces_the_old() {
    let mut b = start().await;
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
    let mut second = TcpStream::connect(b.serial_addr).await.unwrap();
    // The first connection is closed by the meter.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(T, b.serial.read(&mut buf))
        .await
        .expect("old connection closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    std::mem::swap(&mut b.serial, &mut second);
    assert_eq!(b.read(&voltage()).await, Ok(Raw::Float(230.5)));
}
