//! Published test vectors of the signed-note, checkpoint and cosignature formats, accepted by
//! metaloop's parser and verifier, and metaloop's own notes checked by a verifier written
//! from the C2SP specification in Python (PyNaCl).
//!
//! Sources: golang.org/x/mod `sumdb/note/note_test.go` and `sumdb/tlog/note_test.go` (the
//! signed-note implementation C2SP's specification was drawn from), and the examples in
//! c2sp.org/signed-note, c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature.

use ed25519_dalek::SigningKey;
use metaloop_ledger::merkle::leaf_hash;
use metaloop_ledger::note::{
    CheckpointNote, Note, NoteError, NoteSignature, NoteSigner, NoteVerifier, base64,
};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

#[test]
fn go_sumdb_note_vectors_verify() {
    let peter = NoteVerifier::parse(PETER_VKEY).unwrap();
    assert_eq!(
        (peter.name.as_str(), peter.id),
        ("PeterNeumann", 0xc74f20a3)
    );
    assert_eq!(peter.to_vkey(), PETER_VKEY);
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let note = Note::parse(&msg).unwrap();
    assert_eq!(note.text, TEXT);
    assert_eq!(note.format(), msg);
    let verifiers = [peter.clone(), enoch.clone()];
    let verified = note.verify(&verifiers).unwrap();
    assert_eq!(verified.len(), 2);
    // Only Peter known: Enoch's signature is ignored.
    assert_eq!(note.verify(std::slice::from_ref(&peter)).unwrap().len(), 1);
}

#[test]
fn signing_the_go_vector_gives_the_published_signature() {
    let skey = base64::decode(PETER_SKEY).unwrap();
    assert_eq!(skey[0], 0x01);
    let seed: [u8; 32] = skey[1..].try_into().unwrap();
    let signer = NoteSigner::ed25519("PeterNeumann", SigningKey::from_bytes(&seed)).unwrap();
    assert_eq!(signer.verifier().to_vkey(), PETER_VKEY);
    assert_eq!(signer.sign(TEXT, 0).line(), PETER_SIG);
}

#[test]
fn c2sp_signed_note_example_verifies() {
    let vkey = NoteVerifier::parse(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    )
    .unwrap();
    let note = Note::parse(
        "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n",
    )
    .unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(note.verify(&[vkey]).unwrap().len(), 1);
}

#[test]
fn changed_notes_and_keys_are_refused() {
    let peter = NoteVerifier::parse(PETER_VKEY).unwrap();
    let msg = format!("{TEXT}\n{PETER_SIG}");
    // Every one-byte change of the text or the signature is refused.
    let sig_start = TEXT.len() + 1 + "— PeterNeumann ".len();
    for i in (0..TEXT.len()).chain(sig_start..msg.len() - 1) {
        let mut bytes = msg.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let Ok(changed) = String::from_utf8(bytes) else {
            continue;
        };
        let outcome =
            Note::parse(&changed).and_then(|n| n.verify(std::slice::from_ref(&peter)).map(|_| ()));
        assert!(outcome.is_err(), "byte {i} changed and still accepted");
    }
    // A note only an unknown key signed is refused.
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    let note = Note::parse(&msg).unwrap();
    assert!(matches!(note.verify(&[enoch]), Err(NoteError::Unsigned(_))));
    // Mangled keys (go's TestNewVerifier: every change of a byte) are refused.
    let bytes = PETER_VKEY.as_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] = b[i].wrapping_add(1);
        if let Ok(text) = String::from_utf8(b) {
            assert!(NoteVerifier::parse(&text).is_err(), "{text}");
        }
    }
    assert!(
        NoteVerifier::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err()
    );
    assert!(
        NoteVerifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .is_err()
    );
    // Structure: no blank line, control characters, a bad signature line.
    for bad in [
        "text\n— a AAAAAAA=\n".to_owned(),
        format!("te\x01xt\n\n{PETER_SIG}"),
        format!("{TEXT}\n— PeterNeumann\n"),
        format!("{TEXT}\n{}", PETER_SIG.trim_end()),
    ] {
        assert!(Note::parse(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn go_tlog_tree_note_is_metaloops_checkpoint_text() {
    // golang.org/x/mod/sumdb/tlog TestFormatTree: RecordHash is RFC 6962's leaf hash.
    let golden =
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
    let cp = CheckpointNote {
        origin: "go.sum database tree".into(),
        size: 123_456_789_012,
        root: leaf_hash(b"hello world"),
    };
    assert_eq!(cp.text(), golden);
    assert_eq!(CheckpointNote::parse(golden).unwrap(), cp);
}

#[test]
fn c2sp_checkpoint_and_cosignature_examples_parse() {
    let note = Note::parse(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
         — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
         — witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n",
    )
    .unwrap();
    let cp = CheckpointNote::parse(&note.text).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20_852_163);
    assert_eq!(
        base64::encode(&cp.root),
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    );
    let cosig: &NoteSignature = &note.signatures[1];
    assert_eq!(cosig.name, "witness.example.com/w1");
    assert_eq!(cosig.id, 0x8d66cf3f);
    // The spec's example message: "time 1679315147".
    assert_eq!(cosig.cosignature_time(), Some(1_679_315_147));
}

const DOC: &str = include_str!("../../../docs/LEDGER.md");

#[test]
fn the_note_example_in_the_docs_is_current() {
    use metaloop_ledger::hex;
    use metaloop_ledger::note::{ledger_origin, ledger_signer, ledger_verifier};
    // RFC 8032 §7.1, TEST 1, and the Merkle root of §8.7.
    let seed = hex::decode_hash("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        .unwrap();
    let key = SigningKey::from_bytes(&seed);
    let root = hex::decode_hash("f4e93341ab9c3365822b32ff5496f2e9bb3c9e0e9be614c43baf4c747cc049d8")
        .unwrap();
    let cp = CheckpointNote {
        origin: ledger_origin(&key.verifying_key()),
        size: 2,
        root,
    };
    let note = Note {
        text: cp.text(),
        signatures: vec![ledger_signer(&key).sign(&cp.text(), 0)],
    }
    .format();
    let vkey = ledger_verifier(&key.verifying_key()).to_vkey();
    // Its base64 key holds a `+`: only the first two separate the parts.
    assert!(vkey.matches('+').count() > 2);
    assert_eq!(NoteVerifier::parse(&vkey).unwrap().to_vkey(), vkey);
    let section = &DOC[DOC
        .find("<!-- example:note -->")
        .expect("LEDGER.md lacks the note example")..];
    let block = &section[section.find("```text\n").unwrap() + "```text\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    assert_eq!(block, note, "the note example in docs/LEDGER.md is stale");
    let after = &section[..section.find("recomputes both").unwrap()];
    assert!(
        after.contains(&format!("`{vkey}`")),
        "the verifier key example in docs/LEDGER.md is stale: {vkey}"
    );
}
