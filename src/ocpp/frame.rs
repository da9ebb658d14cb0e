//! OCPP-J frames: `[2, id, action, payload]`, `[3, id, payload]`, `[4, id, code, desc, details]`.
//!
//! Owns: the shape of a frame. Payloads stay raw JSON (borrowed) until the version decoder
//! knows what to expect.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug)]
pub enum Frame<'a> {
    Call {
        message_id: Cow<'a, str>,
        action: Cow<'a, str>,
        payload: &'a RawValue,
    },
    CallResult {
        message_id: Cow<'a, str>,
        payload: &'a RawValue,
    },
    CallError {
        message_id: Cow<'a, str>,
        error_code: Cow<'a, str>,
    },
}

impl Frame<'_> {
    /// A hash of the frame's content (message id, action or error code, payload text):
    /// equal for a frame and its verbatim repeats.
    pub fn content_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        match self {
            Frame::Call {
                message_id,
                action,
                payload,
            } => (2u8, message_id, action, payload.get()).hash(&mut h),
            Frame::CallResult {
                message_id,
                payload,
            } => (3u8, message_id, payload.get()).hash(&mut h),
            Frame::CallError {
                message_id,
                error_code,
            } => (4u8, message_id, error_code).hash(&mut h),
        }
        h.finish()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Frame<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(FrameVisitor(std::marker::PhantomData))
    }
}

struct FrameVisitor<'a>(std::marker::PhantomData<&'a ()>);

fn required<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
    seq: &mut A,
    what: &str,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom(format!("frame ends before its {what}")))
}

impl<'de: 'a, 'a> Visitor<'de> for FrameVisitor<'a> {
    type Value = Frame<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OCPP-J frame array [2|3|4, messageId, …]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame<'a>, A::Error> {
        let type_id: u8 = required(&mut seq, "message type id")?;
        let message_id: Cow<'a, str> = required(&mut seq, "message id")?;
        let frame = match type_id {
            2 => Frame::Call {
                message_id,
                action: required(&mut seq, "action")?,
                payload: required(&mut seq, "payload")?,
            },
            3 => Frame::CallResult {
                message_id,
                payload: required(&mut seq, "payload")?,
            },
            4 => {
                let error_code = required(&mut seq, "error code")?;
                // description and details are optional in practice; keep none of them.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(Frame::CallError {
                    message_id,
                    error_code,
                });
            }
            other => {
                return Err(de::Error::custom(format!(
                    "message type id {other} is not 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)"
                )))
            }
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("frame has extra elements"));
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_frame_types() {
        let f: Frame = serde_json::from_str(r#"[2,"1","Heartbeat",{}]"#).unwrap();
        assert!(matches!(f, Frame::Call { action, .. } if action == "Heartbeat"));
        let f: Frame = serde_json::from_str(r#"[3,"1",{"currentTime":"x"}]"#).unwrap();
        assert!(matches!(f, Frame::CallResult { .. }));
        let f: Frame = serde_json::from_str(r#"[4,"1","NotImplemented","",{}]"#).unwrap();
        assert!(matches!(f, Frame::CallError { error_code, .. } if error_code == "NotImplemented"));
    }

    #[test]
    fn rejects_what_is_not_a_frame() {
        for bad in [
            r#"[]"#,
            r#"[2]"#,
            r#"[2,"1","Heartbeat"]"#,
            r#"[5,"1",{}]"#,
            r#"[2,1,"Heartbeat",{}]"#,
            r#"[2,"1","Heartbeat",{},{}]"#,
            r#"{"a":1}"#,
            r#""[2,\"1\",\"Heartbeat\",{}]""#,
        ] {
            assert!(serde_json::from_str::<Frame>(bad).is_err(), "{bad}");
        }
    }
}
