//! Arbitrary datagrams into the tap frame decoder and every payload decoder: the agent reads
//! these from any local process that can reach its socket, so none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logtap_protocol::tap::{decode_frame, FileAnnounce, Hello, Kind, Loss};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data) {
        assert_eq!(frame.payload.len(), frame.header.payload_len as usize);
        let _ = match frame.header.kind {
            Kind::Hello => Hello::decode(frame.payload).map(|_| ()),
            Kind::Loss => Loss::decode(frame.payload).map(|_| ()),
            Kind::File => FileAnnounce::decode(frame.payload).map(|_| ()),
            Kind::Data => Ok(()),
        };
    }
    // Payload decoders also see raw bytes directly (a frame's payload is attacker-chosen).
    let _ = Hello::decode(data);
    let _ = Loss::decode(data);
    let _ = FileAnnounce::decode(data);
});
