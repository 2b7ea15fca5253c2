//! Transferring a live call to a person: carriers that can redirect a call in progress. Twilio:
//! update the call with TwiML that dials the number (`POST /2010-04-01/Accounts/{sid}/Calls/
//! {CallSid}.json`, form field `Twiml`, basic auth with the account SID and auth token). The media
//! stream then ends on Twilio's side.

use secrecy::ExposeSecret;

use crate::api::Telephony;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("transfers need Twilio's account SID and auth token")]
    NotConfigured,
    #[error("the call has no carrier call id")]
    NoCallId,
    #[error("Twilio refused the transfer: {status} {body}")]
    Refused { status: u16, body: String },
    #[error("Twilio could not be reached: {0}")]
    Unreachable(String),
}

/// The TwiML that dials `number` (E.164, so it needs no escaping beyond the `+`).
pub fn dial_twiml(number: &str) -> String {
    let digits: String = number
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    format!("<Response><Dial>{digits}</Dial></Response>")
}

/// Redirects the Twilio call `call_sid` to dial `number`.
pub async fn twilio(
    telephony: &Telephony,
    call_sid: Option<&str>,
    number: &str,
) -> Result<(), TransferError> {
    let (Some(sid), Some(token)) = (&telephony.twilio_account_sid, &telephony.twilio_auth_token)
    else {
        return Err(TransferError::NotConfigured);
    };
    let call_sid = call_sid.ok_or(TransferError::NoCallId)?;
    let url = format!(
        "{}/2010-04-01/Accounts/{sid}/Calls/{call_sid}.json",
        telephony.twilio_api_url
    );
    let response = telephony
        .http
        .post(url)
        .basic_auth(sid, Some(token.expose_secret()))
        .form(&[("Twiml", dial_twiml(number))])
        .send()
        .await
        .map_err(|e| TransferError::Unreachable(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(TransferError::Refused {
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}
