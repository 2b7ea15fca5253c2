//! Transferring a live call to a person: carriers that can redirect a call in progress. Twilio's
//! call is updated with TwiML that dials the number (through [`TwilioCarrier`]); the media
//! stream then ends on Twilio's side.

use secrecy::{ExposeSecret, SecretString};

use crate::api::Telephony;
use crate::carrier::twilio::TwilioCarrier;
use crate::carrier::{Carrier, CarrierError};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("transfers need Twilio's account SID and auth token")]
    NotConfigured,
    #[error("the call has no carrier call id")]
    NoCallId,
    #[error("the transfer failed: {0}")]
    Carrier(#[from] CarrierError),
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
    let twilio = TwilioCarrier::new(
        telephony.http.clone(),
        &telephony.twilio_api_url,
        sid,
        SecretString::from(token.expose_secret().to_owned()),
    );
    twilio.transfer(call_sid, number).await?;
    Ok(())
}
