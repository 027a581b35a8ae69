//! Published test vectors.
//!
//! * DSSE: secure-systems-lab/dsse `protocol.md` (the PAE example) and `testvectors/vectors.json`
//!   (commit 82043adf78bb4e67c208f9ffa72b38804ea6a0c4; Ed25519 keys from RFC 8032 §7.1 TEST 1
//!   and TEST 2): PAE bytes, accept/reject, and byte-identical signatures.
//! * The CloudEvents verifiability extension, cloudevents/spec
//!   `cloudevents/extensions/verifiability.md` at commit 0dcb92309cf73ae6c529e5ce10dc4f3d2e2bf6d1,
//!   "Test Vectors": the verification material (the DSSE payload) of every case, and each
//!   case's ECDSA P-256 signature checked over our PAE of it.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use metaloop_mesh::dsse::{self, Envelope, TrustedKey, pae};
use metaloop_mesh::envelope::{self, Data};
use metaloop_mesh::verifiability::{self, PAYLOAD_TYPE, SIGNEDEXTATTRS, VerifyError};
use p256::ecdsa::signature::Verifier as _;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// DSSE
// ---------------------------------------------------------------------------------------

const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const SEED_B: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const PUBLIC_B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

const STATEMENT_B64: &str = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==";
const IN_TOTO: &str = "application/vnd.in-toto+json";
const SIG_A_STATEMENT: &str =
    "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==";
const SIG_B_STATEMENT: &str =
    "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw==";
const PAE_STATEMENT: &str = "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d";

struct DsseVector {
    id: &'static str,
    payload: &'static str,
    payload_type: &'static str,
    /// (keyid, sig)
    signatures: &'static [(Option<&'static str>, &'static str)],
    trusted: &'static [&'static str],
    threshold: usize,
    supported: &'static [&'static str],
    pae_hex: &'static str,
    accept: bool,
}

const DSSE_VECTORS: &[DsseVector] = &[
    DsseVector {
        id: "single-signature",
        payload: STATEMENT_B64,
        payload_type: IN_TOTO,
        signatures: &[(Some("A"), SIG_A_STATEMENT)],
        trusted: &["A"],
        threshold: 1,
        supported: &[IN_TOTO],
        pae_hex: PAE_STATEMENT,
        accept: true,
    },
    DsseVector {
        id: "url-safe-base64",
        payload: "-_-_Pj8=",
        payload_type: IN_TOTO,
        signatures: &[(
            Some("A"),
            "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==",
        )],
        trusted: &["A"],
        threshold: 1,
        supported: &[IN_TOTO],
        pae_hex: "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520fbffbf3e3f",
        accept: true,
    },
    DsseVector {
        id: "payload-type-swapped",
        payload: STATEMENT_B64,
        payload_type: "application/vnd.example.other+json",
        signatures: &[(Some("A"), SIG_A_STATEMENT)],
        trusted: &["A"],
        threshold: 1,
        supported: &[IN_TOTO, "application/vnd.example.other+json"],
        // The PAE the signature covers (the original type), not the swapped one.
        pae_hex: PAE_STATEMENT,
        accept: false,
    },
    DsseVector {
        id: "non-ascii-payload-type",
        payload: STATEMENT_B64,
        payload_type: "application/vnd.exämple+json",
        signatures: &[(
            Some("A"),
            "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw==",
        )],
        trusted: &["A"],
        threshold: 1,
        supported: &["application/vnd.exämple+json"],
        pae_hex: "445353457631203239206170706c69636174696f6e2f766e642e6578c3a46d706c652b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
        accept: true,
    },
    DsseVector {
        id: "empty-payload",
        payload: "",
        payload_type: IN_TOTO,
        signatures: &[(
            Some("A"),
            "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC2VX5/jHfkkDqsj7CDbDg==",
        )],
        trusted: &["A"],
        threshold: 1,
        supported: &[IN_TOTO],
        pae_hex: "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020",
        accept: true,
    },
    DsseVector {
        id: "empty-payload-type",
        payload: STATEMENT_B64,
        payload_type: "",
        signatures: &[(
            Some("A"),
            "iC3q/+3Rm0+lpAJRueDmDh15PnwCfxKmS0NAfKsbv+zgulXQC/WM9trc+j1XEqlwDIg/vf/uNfebeD6sxInrDg==",
        )],
        trusted: &["A"],
        threshold: 1,
        supported: &[IN_TOTO],
        pae_hex: "445353457631203020203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
        accept: false,
    },
    DsseVector {
        id: "threshold-two-distinct-keys",
        payload: STATEMENT_B64,
        payload_type: IN_TOTO,
        signatures: &[(Some("A"), SIG_A_STATEMENT), (Some("B"), SIG_B_STATEMENT)],
        trusted: &["A", "B"],
        threshold: 2,
        supported: &[IN_TOTO],
        pae_hex: PAE_STATEMENT,
        accept: true,
    },
    DsseVector {
        id: "threshold-two-one-key-twice",
        payload: STATEMENT_B64,
        payload_type: IN_TOTO,
        signatures: &[(Some("A"), SIG_A_STATEMENT), (Some("A"), SIG_A_STATEMENT)],
        trusted: &["A", "B"],
        threshold: 2,
        supported: &[IN_TOTO],
        pae_hex: PAE_STATEMENT,
        accept: false,
    },
    DsseVector {
        id: "threshold-two-without-keyids",
        payload: STATEMENT_B64,
        payload_type: IN_TOTO,
        signatures: &[(None, SIG_A_STATEMENT), (None, SIG_B_STATEMENT)],
        trusted: &["A", "B"],
        threshold: 2,
        supported: &[IN_TOTO],
        pae_hex: PAE_STATEMENT,
        accept: true,
    },
];

fn dsse_key(name: &str) -> (SigningKey, VerifyingKey) {
    let (seed, public) = match name {
        "A" => (SEED_A, PUBLIC_A),
        "B" => (SEED_B, PUBLIC_B),
        _ => unreachable!(),
    };
    let sk = SigningKey::from_bytes(&unhex(seed).try_into().unwrap());
    let vk = sk.verifying_key();
    assert_eq!(hex(vk.as_bytes()), public, "RFC 8032 key {name}");
    (sk, vk)
}

#[test]
fn dsse_protocol_pae_example() {
    assert_eq!(
        pae(b"http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn dsse_test_vectors() {
    let (sk_a, vk_a) = dsse_key("A");
    let (sk_b, vk_b) = dsse_key("B");
    for v in DSSE_VECTORS {
        let envelope = Envelope {
            payload_type: v.payload_type.into(),
            payload: v.payload.into(),
            signatures: v
                .signatures
                .iter()
                .map(|(keyid, sig)| dsse::EnvelopeSignature {
                    keyid: keyid.map(str::to_owned),
                    sig: (*sig).to_owned(),
                })
                .collect(),
        };
        // The PAE the signatures cover; for the swapped vector that is the original type.
        let body = dsse::decode_base64(v.payload).unwrap();
        let covered_type = if v.id == "payload-type-swapped" {
            IN_TOTO
        } else {
            v.payload_type
        };
        let message = pae(covered_type.as_bytes(), &body);
        assert_eq!(hex(&message), v.pae_hex, "{}: PAE", v.id);
        // Ed25519 is deterministic: signing the PAE reproduces the published signatures.
        for (keyid, sig) in v.signatures {
            let by_a = dsse::encode_base64(&sk_a.sign(&message).to_bytes());
            let by_b = dsse::encode_base64(&sk_b.sign(&message).to_bytes());
            let published = dsse::encode_base64(&dsse::decode_base64(sig).unwrap());
            assert!(
                published == by_a || published == by_b,
                "{}: signature ({keyid:?}) is a signature of the PAE by key A or B",
                v.id
            );
        }
        let trusted: Vec<TrustedKey> = v
            .trusted
            .iter()
            .map(|name| TrustedKey {
                id: name,
                key: if *name == "A" { &vk_a } else { &vk_b },
            })
            .collect();
        let result = envelope.verify(&trusted, v.threshold, v.supported);
        assert_eq!(result.is_ok(), v.accept, "{}: {result:?}", v.id);
        if let Ok((payload, _)) = result {
            assert_eq!(payload, body, "{}", v.id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// CloudEvents verifiability extension
// ---------------------------------------------------------------------------------------

/// The vectors' key: ECDSA over NIST P-256 and SHA-256; raw r‖s signatures.
const P256_X: &str =
    "46950820868899156662930047687818585632848591499744589407958293238635476079160";
const P256_Y: &str = "5640078356564379163099075877009565129882514886557779369047442380624545832820";

fn decimal_to_be32(decimal: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for digit in decimal.bytes() {
        let mut carry = u32::from(digit - b'0');
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "fits in 32 bytes");
    }
    out
}

fn p256_key() -> p256::ecdsa::VerifyingKey {
    let mut sec1 = vec![4u8];
    sec1.extend_from_slice(&decimal_to_be32(P256_X));
    sec1.extend_from_slice(&decimal_to_be32(P256_Y));
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap()
}

/// Cases 1, 3 and 4 as laid out in the revision they were generated with (two-space
/// indentation, as in the extension's examples); the signature covers `data`'s bytes, so
/// the layout matters.
const CASE_1: &str = "{\n  \"specversion\" : \"1.0\",\n  \"id\" : \"1\",\n  \"source\" : \"example/uri\",\n  \"type\" : \"example.type\",\n  \"datacontenttype\" : \"application/json\",\n  \"data\" : {\n    \"hello\" : \"world\"\n  }\n}";
const CASE_2: &str = "{\n  \"specversion\" : \"1.0\",\n  \"id\" : \"1\",\n  \"source\" : \"example/uri\",\n  \"subject\": \"\",\n  \"type\" : \"example.type\",\n  \"datacontenttype\" : \"application/json\",\n  \"data\" : {\n    \"hello\" : \"world\"\n  }\n}";
const CASE_3: &str = "{\n  \"specversion\" : \"1.0\",\n  \"id\" : \"1\",\n  \"source\" : \"example/uri\",\n  \"subject\": \"\",\n  \"type\" : \"example.type\",\n  \"datacontenttype\" : \"application/json\",\n  \"time\": \"2020-06-18T17:24:53Z\",\n  \"data\" : {\n    \"hello\" : \"world\"\n  }\n}";
const CASE_4: &str = "{\n  \"specversion\" : \"1.0\",\n  \"id\" : \"1\",\n  \"source\" : \"example/uri\",\n  \"subject\": \"\",\n  \"type\" : \"example.type\",\n  \"datacontenttype\" : \"application/json\",\n  \"time\": \"2020-06-18T19:24:53+02:00\",\n  \"data\" : {\n    \"hello\" : \"world\"\n  }\n}";
const CASE_5: &str = "{\n \"specversion\" : \"1.0\",\n \"id\" : \"1\",\n \"source\" : \"example/uri\",\n \"type\" : \"example.type.binary\",\n \"datacontenttype\" : \"application/octet-stream\",\n \"data_base64\" : \"8J+koQ==\"\n}";
/// Cases 6a, 6b, 7 and 8 exactly as printed in the pinned revision (one-space indentation).
const CASE_6A: &str = "{\n \"specversion\" : \"1.0\",\n \"id\" : \"1\",\n \"source\" : \"example/uri\",\n \"type\" : \"example.type\",\n \"datacontenttype\" : \"application/json\",\n \"exta\" : \"value1\",\n \"data\" : {\n  \"hello\" : \"world\"\n }\n}";
const CASE_6B: &str = "{\n \"specversion\" : \"1.0\",\n \"id\" : \"1\",\n \"source\" : \"example/uri\",\n \"type\" : \"example.type\",\n \"datacontenttype\" : \"application/json\",\n \"exta\" : \"value1\",\n \"extb\" : \"value2\",\n \"data\" : {\n  \"hello\" : \"world\"\n }\n}";

const MATERIAL_1: &str = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoiNXh6NS9WdG94TkpWWWFZeG1MZUw2eEw5STZDYXY5UDNnb2g2cXlDWUdmUT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJ3WWo4YlJQWFlDSUxyeXdzUDdXR1VCd1RKc25aSFlYTUhpWEZtWWh1QkdhOU1ocDdYNHZFN1FBYkhXbytXZitjTURBYjN6dXlwRjVVbVdwZGtJUGppUT09In1dfQ==";
const MATERIAL_2: &str = "eyJwYXlsb2FkVHlwZSI6ImFwcGxpY2F0aW9uL3ZuZC5jbG91ZGV2ZW50cytqc29uIiwicGF5bG9hZCI6ImV5SmthV2RsYzNSeklqcGJJbUUwWVhsakx6Z3dMMDlIWkdFMFFrOHZNVzh2VmpCbGRIQlBjV2xNZURGS2QwSTFVek5pWlVoWE1ITTlJaXdpVlVzeFYwVmpVM1Z1Y2tZNVFua3pOSEZFVlU5dWRXSndXR1Y1Tm1JeE1rOUxMMVJaVFRSU01rOVNSVDBpTENJd1VEbGFaRXhoY1ZWek9WZExLM0JhU1ZsUlRVRjVjVWREY0VkcVZWTTVMelpRWkc4NWNuWm5RbVpaUFNJc0lsUjNTVU5ZTW5WM2VXOTRUVlZUWWxrd1Mxb3hUelEzVTBkd0wxZHBZbVkyTm1WbFJrUndPV0YyVm1jOUlpd2lkWE4wTW0wd1lqSXdWMjQzU1c0MlowcHNWVkJSVWpGSGVTdGFjVzVEY0hKdk1sSktlVTByVDFSbGJ6MGlMQ0kwTjBSRlVYQnFPRWhDVTJFckwxUkpiVmNyTlVwRFpYVlJaVkpyYlRWT1RYQktWMXBITTJoVGRVWlZQU0lzSWpRM1JFVlJjR280U0VKVFlTc3ZWRWx0VnlzMVNrTmxkVkZsVW10dE5VNU5jRXBYV2tjemFGTjFSbFU5SWl3aU5EZEVSVkZ3YWpoSVFsTmhLeTlVU1cxWEt6VktRMlYxVVdWU2EyMDFUazF3U2xkYVJ6Tm9VM1ZHVlQwaUxDSnJOa2sxWTJGclZUVmxja3c0UzJwVFZWWlVUbTkzYmtSM1kyTjJkVFZyVlRGSWVHYzRPSFJ2UmxsblBTSmRmUT09Iiwic2lnbmF0dXJlcyI6W3sia2V5aWQiOiJmM2VkOTdkNTM3NzRjNjk3NDFkY2FiZjllOTc4NWNlZjZlMGY1ODk5NWM4Njk2OGJjMTRiODE2YTg5OWE4YTQ1Iiwic2lnIjoiTUVVQ0lBaHRMQ1JnZEd4QjUva2ZhY3YzWi9RZzAyN0VuVG9abnI2K2JLTWp6dHpKQWlFQWcxM3NSbEhCb2lsamU4VUxyNFBVL0lPbkl5L3JsSkd4Rm9QbUlhdU5SQ0U9In1dfQ==";
const MATERIAL_3_4: &str = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoid0tDYThzcTNkeWcvMDBaaURReS9hWEFZMXRlcFFucktMYTZ4UDBZM0QvUT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJQSXhPUHF3MGFJeW9acExtdU5DTlpNS3pBNlgxWVovUXpiZVR3UzMvS3BBMjZJQzF0SU9oLzdkRFBDMWk0RW82b1dxRk1WRXJ4cEZrR0hGMnM0MHAvZz09In1dfQ==";
const MATERIAL_5: &str = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoicUNTZWlaa1MraEg5V2lDbGZxNnBsZnFZTlZ5Mmt2eFdSZm9CckxFem9Eaz0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJEWXdiU3V4SDRXcWFhQlZPVlU4TllJYTZXYnZDazkvdkc5aGV0d3BKNHpJNWo2am1BTGRNaHcrcVZuc211YzY2NWZqVlJGVDFRUHUvanA1Z0c0U2pzUT09In1dfQ==";
const MATERIAL_6: &str = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoiUE1nU3ZQdG9nZ0FPY3RIaDZDM1F3VC96a2ZoQUpadFJKaVJnRFBFazhnRT0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJzajBwRS96OW5xalh1QTFNRFRBT29lU2FtYlVXUmhHQ2tJWFdmM2VnaEUwOUd1UzhHQVZYZWdxaStmM1hwOG90WEFudHlyNnY3Q0lOaythWms1SmpUZz09In1dfQ==";
const MATERIAL_7: &str = "eyJwYXlsb2FkVHlwZSI6Imh0dHBzOi8vY2xvdWRldmVudHMuaW8vdmVyaWZpYWJpbGl0eS9kc3NlL3YwLjEiLCJwYXlsb2FkIjoib3ZhaGZKV2FLYVBWRFRzUGlJUW9Ucjl1NUpOVEFFMjFHQkg1RzVQWkQ4MD0iLCJzaWduYXR1cmVzIjpbeyJrZXlpZCI6InRlc3RrZXkiLCJzaWciOiJONkU0TFJyZGRHZGJqc0FQODVCYkpsZUo5ZnV0c2E2YTdhRWVtc1Ric29XL0lKU3F2Zmc4ZkhPcGtzbkFZcHFtRnJQWk8zeitWUERrWjNEbWpMN1FQZz09In1dfQ==";

fn material_envelope(material: &str) -> Envelope {
    serde_json::from_slice(&dsse::decode_base64(material).unwrap()).unwrap()
}

/// The envelope's single ECDSA signature verifies over PAE(payloadType, payload).
fn assert_p256_signature(envelope: &Envelope, case: &str) {
    let payload = envelope.payload_bytes().unwrap();
    let message = pae(envelope.payload_type.as_bytes(), &payload);
    let raw = dsse::decode_base64(&envelope.signatures[0].sig).unwrap();
    let sig = if raw.len() == 64 {
        p256::ecdsa::Signature::from_slice(&raw).unwrap()
    } else {
        p256::ecdsa::Signature::from_der(&raw).unwrap()
    };
    p256_key()
        .verify(&message, &sig)
        .unwrap_or_else(|e| panic!("case {case}: signature over our PAE: {e}"));
}

fn check_case(case: &str, document: &str, signed: &[&str], material: &str) {
    let event = envelope::parse_event(document.as_bytes()).unwrap();
    let names: Vec<String> = signed.iter().map(|s| (*s).to_owned()).collect();
    let digest = verifiability::verification_material(&event, &names).unwrap();
    let envelope = material_envelope(material);
    assert_eq!(envelope.payload_type, PAYLOAD_TYPE, "case {case}");
    assert_eq!(
        hex(&digest),
        hex(&envelope.payload_bytes().unwrap()),
        "case {case}: verification material"
    );
    assert_p256_signature(&envelope, case);
}

#[test]
fn extension_case_1_event_without_time() {
    check_case("1", CASE_1, &[], MATERIAL_1);
}

#[test]
fn extension_case_3_zulu_time_and_case_4_offset_time_sign_the_same() {
    check_case("3", CASE_3, &[], MATERIAL_3_4);
    check_case("4", CASE_4, &[], MATERIAL_3_4);
    // An empty subject digests like an absent one.
    let with_empty = envelope::parse_event(CASE_3.as_bytes()).unwrap();
    let mut without = with_empty.clone();
    without.subject = None;
    assert_eq!(
        verifiability::verification_material(&with_empty, &[]).unwrap(),
        verifiability::verification_material(&without, &[]).unwrap()
    );
}

#[test]
fn extension_case_5_binary_data() {
    let event = envelope::parse_event(CASE_5.as_bytes()).unwrap();
    assert_eq!(event.data, Some(Data::Binary("🤡".as_bytes().to_vec())));
    check_case("5", CASE_5, &[], MATERIAL_5);
}

#[test]
fn extension_cases_6a_6b_7_signed_extension_attributes() {
    check_case("6a", CASE_6A, &["exta"], MATERIAL_6);
    // An unsigned extension attribute (extb) changes nothing.
    check_case("6b", CASE_6B, &["exta"], MATERIAL_6);
    check_case("7", CASE_6B, &["exta", "extb"], MATERIAL_7);
}

#[test]
fn extension_case_8_spaces_in_signedextattrs_are_an_error() {
    let mut event = envelope::parse_event(CASE_6B.as_bytes()).unwrap();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let err = verifiability::sign(&mut event, &key, "k", &["exta", " extb"]).unwrap_err();
    assert!(err.to_string().contains("\" extb\""), "{err}");
    event
        .extensions
        .insert(SIGNEDEXTATTRS.into(), "exta, extb".into());
    assert!(matches!(
        verifiability::signed_extension_names(&event),
        Err(VerifyError::SignedExtAttrs(_))
    ));
}

#[test]
fn extension_case_2_is_from_an_earlier_revision() {
    // Its envelope has payloadType application/vnd.cloudevents+json and a JSON list of
    // digests as payload: the shape of an earlier draft. Its signature still checks over
    // our PAE (so PAE agrees), but the pinned revision refuses that payload type.
    let envelope = material_envelope(MATERIAL_2);
    assert_eq!(envelope.payload_type, "application/vnd.cloudevents+json");
    assert_ne!(envelope.payload_type, PAYLOAD_TYPE);
    assert_p256_signature(&envelope, "2");
    assert!(envelope::parse_event(CASE_2.as_bytes()).is_ok());
}

#[test]
fn the_examples_layout_matters_because_data_bytes_are_signed() {
    // Case 1 printed with one-space indentation (as in the pinned revision's text) has other
    // data bytes, so its material differs from the published one.
    let one_space = CASE_1.replace("\n  ", "\n ").replace("\n   ", "\n  ");
    let event = envelope::parse_event(one_space.as_bytes()).unwrap();
    let digest = verifiability::verification_material(&event, &[]).unwrap();
    assert_ne!(
        digest.to_vec(),
        material_envelope(MATERIAL_1).payload_bytes().unwrap()
    );
    // And the data bytes the published material covers are the text after the colon.
    let event = envelope::parse_event(CASE_1.as_bytes()).unwrap();
    assert_eq!(
        event.data.as_ref().unwrap().signed_bytes(),
        b" {\n    \"hello\" : \"world\"\n  }"
    );
}
