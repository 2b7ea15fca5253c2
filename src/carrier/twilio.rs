//! Twilio as a [`Carrier`], over its REST API (`{api_url}/2010-04-01/Accounts/{AccountSid}/…`).
//!
//! Every request carries HTTP basic auth (account SID and auth token) and a form-encoded body;
//! Twilio answers JSON. A placed call runs [`stream_twiml`], which connects its audio to the
//! engine's media websocket with the stream token as a custom parameter; Twilio then reports the
//! call's progress to the dial's status callback, read back by [`parse_status`]. A non-2xx answer
//! becomes [`CarrierError::Refused`] with Twilio's error code and message; a failure to reach
//! Twilio becomes [`CarrierError::Unreachable`]. The auth token never appears in an error or a
//! `Debug` print.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::{Method, RequestBuilder, Response, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    AvailableNumber, CallProgress, Carrier, CarrierError, Dial, NumberKind, NumberQuery, Placed,
    Provisioned,
};

/// Twilio's production API.
pub const DEFAULT_API_URL: &str = "https://api.twilio.com";

/// How long one API request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a non-JSON error body goes into [`CarrierError::Refused`].
const ERROR_BODY_CHARS: usize = 300;

/// The call events Twilio reports to a dial's status callback.
const STATUS_CALLBACK_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// Twilio's REST API under one account.
#[derive(Debug, Clone)]
pub struct TwilioCarrier {
    http: reqwest::Client,
    /// Base URL without a trailing slash (a trailing slash is tolerated).
    api_url: String,
    account_sid: String,
    /// `SecretString` prints as redacted, so the derived `Debug` is safe.
    auth_token: SecretString,
}

impl TwilioCarrier {
    pub fn new(
        http: reqwest::Client,
        api_url: &str,
        account_sid: &str,
        auth_token: SecretString,
    ) -> Self {
        TwilioCarrier {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            account_sid: account_sid.trim().to_owned(),
            auth_token,
        }
    }

    /// `{api_url}/2010-04-01/Accounts/{AccountSid}/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, CarrierError> {
        if self.account_sid.is_empty() || self.account_sid == "." || self.account_sid == ".." {
            // The URL library silently drops `.` and `..` segments.
            return Err(CarrierError::NotConfigured("twilio account sid"));
        }
        let mut url = Url::parse(&self.api_url)
            .map_err(|_| CarrierError::NotConfigured("twilio api url is not a valid url"))?;
        url.path_segments_mut()
            .map_err(|()| CarrierError::NotConfigured("twilio api url is not a valid base url"))?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", &self.account_sid])
            .extend(segments);
        Ok(url)
    }

    /// `{resource}/{sid}.json` under the account, for a sid Twilio gave us.
    fn resource_url(&self, resource: &str, sid: &str) -> Result<Url, CarrierError> {
        let sid = sid.trim();
        if sid.is_empty() {
            return Err(CarrierError::Invalid(format!(
                "an empty twilio {resource} sid"
            )));
        }
        self.url(&[resource, &format!("{sid}.json")])
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .timeout(REQUEST_TIMEOUT)
    }

    /// Sends `request`; a 2xx response is returned, anything else becomes an error.
    async fn send(request: RequestBuilder) -> Result<Response, CarrierError> {
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(CarrierError::Refused {
            status: status.as_u16(),
            message: error_message(&body),
        })
    }

    /// Sends `request` and reads its 2xx JSON body as `T`.
    async fn send_json<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, CarrierError> {
        let response = Self::send(request).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(unreachable)?;
        serde_json::from_slice(&body).map_err(|e| CarrierError::Refused {
            status,
            message: format!("unreadable response from twilio: {e}"),
        })
    }

    async fn available_numbers(
        &self,
        query: NumberQuery,
    ) -> Result<Vec<AvailableNumber>, CarrierError> {
        let kind = match query.kind {
            NumberKind::Local => "Local.json",
            NumberKind::Mobile => "Mobile.json",
            NumberKind::TollFree => "TollFree.json",
        };
        let mut url = self.url(&["AvailablePhoneNumbers", query.country.code(), kind])?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(area_code) = query.area_code.as_deref().map(str::trim)
                && !area_code.is_empty()
            {
                pairs.append_pair("AreaCode", area_code);
            }
            pairs.append_pair("PageSize", &query.limit.max(1).to_string());
        }
        let list: AvailableList = Self::send_json(self.request(Method::GET, url)).await?;
        Ok(list
            .available_phone_numbers
            .into_iter()
            .take(query.limit)
            .map(|n| AvailableNumber {
                phone_number: n.phone_number,
                friendly_name: n.friendly_name,
                country: query.country,
                kind: query.kind,
            })
            .collect())
    }

    async fn provision_number(
        &self,
        phone_number: &str,
        voice_url: &str,
    ) -> Result<Provisioned, CarrierError> {
        let url = self.url(&["IncomingPhoneNumbers.json"])?;
        let form = [
            ("PhoneNumber", phone_number),
            ("VoiceUrl", voice_url),
            ("VoiceMethod", "POST"),
        ];
        let created: Created = Self::send_json(self.request(Method::POST, url).form(&form)).await?;
        Ok(Provisioned {
            carrier_sid: created.sid,
        })
    }

    async fn release_number(&self, carrier_sid: &str) -> Result<(), CarrierError> {
        let url = self.resource_url("IncomingPhoneNumbers", carrier_sid)?;
        Self::send(self.request(Method::DELETE, url)).await?;
        Ok(())
    }

    async fn place_call(&self, dial: Dial) -> Result<Placed, CarrierError> {
        let url = self.url(&["Calls.json"])?;
        let twiml = stream_twiml(&dial.stream_url, &dial.token, dial.call_id);
        let timeout = dial.ring_timeout_secs.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("To", &dial.to),
            ("From", &dial.from),
            ("Twiml", &twiml),
            ("StatusCallback", &dial.status_callback),
            ("StatusCallbackMethod", "POST"),
        ];
        form.extend(STATUS_CALLBACK_EVENTS.map(|event| ("StatusCallbackEvent", event)));
        form.push(("Timeout", &timeout));
        if dial.detect_machine {
            form.push(("MachineDetection", "Enable"));
        }
        let created: Created = Self::send_json(self.request(Method::POST, url).form(&form)).await?;
        Ok(Placed {
            carrier_call_id: created.sid,
        })
    }

    /// Updates a live call (`POST Calls/{sid}.json`) with `form`.
    async fn update_call(
        &self,
        carrier_call_id: &str,
        form: &[(&str, &str)],
    ) -> Result<(), CarrierError> {
        let url = self.resource_url("Calls", carrier_call_id)?;
        Self::send(self.request(Method::POST, url).form(form)).await?;
        Ok(())
    }

    async fn transfer_call(&self, carrier_call_id: &str, number: &str) -> Result<(), CarrierError> {
        let digits: String = number
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        if !digits.chars().any(|c| c.is_ascii_digit()) {
            return Err(CarrierError::Invalid(format!(
                "the transfer number {number:?} has no digits"
            )));
        }
        let twiml = format!("<Response><Dial>{digits}</Dial></Response>");
        self.update_call(carrier_call_id, &[("Twiml", &twiml)])
            .await
    }
}

impl Carrier for TwilioCarrier {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn available(
        &self,
        query: NumberQuery,
    ) -> BoxFuture<'_, Result<Vec<AvailableNumber>, CarrierError>> {
        Box::pin(self.available_numbers(query))
    }

    fn provision<'a>(
        &'a self,
        phone_number: &'a str,
        voice_url: &'a str,
    ) -> BoxFuture<'a, Result<Provisioned, CarrierError>> {
        Box::pin(self.provision_number(phone_number, voice_url))
    }

    fn release<'a>(&'a self, carrier_sid: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(self.release_number(carrier_sid))
    }

    fn dial(&self, dial: Dial) -> BoxFuture<'_, Result<Placed, CarrierError>> {
        Box::pin(self.place_call(dial))
    }

    fn hang_up<'a>(&'a self, carrier_call_id: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            self.update_call(carrier_call_id, &[("Status", "completed")])
                .await
        })
    }

    fn transfer<'a>(
        &'a self,
        carrier_call_id: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(self.transfer_call(carrier_call_id, number))
    }
}

/// The TwiML of an outbound call's media: connect it to the media websocket at `stream_url`,
/// with the stream `token` and the engine's `call_id` as custom parameters.
pub fn stream_twiml(stream_url: &str, token: &str, call_id: i64) -> String {
    format!(
        "<Response><Connect><Stream url=\"{}\"><Parameter name=\"token\" value=\"{}\"/><Parameter name=\"call_id\" value=\"{call_id}\"/></Stream></Connect></Response>",
        xml_attribute(stream_url),
        xml_attribute(token),
    )
}

/// Twilio's status callback form (`CallStatus`, `AnsweredBy`, `CallDuration`, …) as progress;
/// `None` for a status this engine does not know.
pub fn parse_status(form: &HashMap<String, String>) -> Option<CallProgress> {
    let field = |name: &str| form.get(name).map_or("", |v| v.trim());
    let progress = match field("CallStatus").to_ascii_lowercase().as_str() {
        "queued" | "initiated" => CallProgress::Initiated,
        "ringing" => CallProgress::Ringing,
        "in-progress" => {
            let answered_by = field("AnsweredBy").to_ascii_lowercase();
            CallProgress::Answered {
                machine: answered_by.starts_with("machine") || answered_by == "fax",
            }
        }
        "completed" => CallProgress::Completed {
            duration_secs: field("CallDuration").parse().unwrap_or(0),
        },
        "busy" => CallProgress::Busy,
        "no-answer" => CallProgress::NoAnswer,
        "failed" | "canceled" | "cancelled" => CallProgress::Failed,
        _ => return None,
    };
    Some(progress)
}

/// Escapes text for a double-quoted XML attribute.
fn xml_attribute(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A transport failure, without the request URL (it names the account) but with its causes
/// (`connection refused`, `timed out`, …), which carry no credentials.
fn unreachable(error: reqwest::Error) -> CarrierError {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    CarrierError::Unreachable(message)
}

/// Twilio's error (`{"code": 21211, "message": "…", …}`) as `"21211: …"`, or the start of a body
/// that is not one.
fn error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct TwilioError {
        code: Option<i64>,
        message: Option<String>,
    }
    match serde_json::from_str::<TwilioError>(body) {
        Ok(TwilioError {
            code: Some(code),
            message: Some(message),
        }) => format!("{code}: {message}"),
        Ok(TwilioError {
            code: None,
            message: Some(message),
        }) => message,
        _ => body.chars().take(ERROR_BODY_CHARS).collect(),
    }
}

#[derive(Deserialize)]
struct AvailableList {
    available_phone_numbers: Vec<AvailableEntry>,
}

#[derive(Deserialize)]
struct AvailableEntry {
    phone_number: String,
    #[serde(default)]
    friendly_name: String,
}

/// A created resource (a number or a call); only its sid matters here.
#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::carrier::Country;

    const ACCOUNT_SID: &str = "AC0123456789abcdef";
    const AUTH_TOKEN: &str = "tok-3f9a-very-secret";

    /// One request as the fake Twilio saw it; repeated keys are kept in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Recorded {
        method: Method,
        path: String,
        authorization: Option<String>,
        content_type: Option<String>,
        query: Vec<(String, String)>,
        form: Vec<(String, String)>,
    }

    /// How the fake Twilio answers a request: status and JSON body.
    type Reply = fn(&Recorded) -> (u16, String);

    struct FakeTwilio {
        base: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    impl FakeTwilio {
        /// A server on 127.0.0.1:0 answering with `reply`.
        async fn start(reply: Reply) -> FakeTwilio {
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = requests.clone();
            let app = Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let log = log.clone();
                    async move {
                        let header_value = |name| {
                            headers
                                .get(name)
                                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
                        };
                        let recorded = Recorded {
                            method,
                            path: uri.path().to_owned(),
                            authorization: header_value(header::AUTHORIZATION),
                            content_type: header_value(header::CONTENT_TYPE),
                            query: serde_urlencoded::from_str(uri.query().unwrap_or_default())
                                .unwrap(),
                            form: serde_urlencoded::from_bytes(&body).unwrap(),
                        };
                        let (status, body) = reply(&recorded);
                        // Never held across an await.
                        log.lock().unwrap().push(recorded);
                        (
                            StatusCode::from_u16(status).unwrap(),
                            [(header::CONTENT_TYPE, "application/json")],
                            body,
                        )
                    }
                },
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            FakeTwilio { base, requests }
        }

        fn carrier(&self) -> TwilioCarrier {
            carrier_at(&self.base)
        }

        /// The one request received so far.
        fn only_request(&self) -> Recorded {
            let requests = self.requests.lock().unwrap();
            assert_eq!(requests.len(), 1, "{requests:#?}");
            requests[0].clone()
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn carrier_at(base: &str) -> TwilioCarrier {
        TwilioCarrier::new(
            reqwest::Client::new(),
            base,
            ACCOUNT_SID,
            SecretString::from(AUTH_TOKEN),
        )
    }

    /// Answers like Twilio for the requests this carrier makes.
    fn twilio_reply(request: &Recorded) -> (u16, String) {
        let path = request.path.as_str();
        let (status, body) = match request.method.as_str() {
            "GET" if path.contains("/AvailablePhoneNumbers/") => (
                200,
                serde_json::json!({
                    "available_phone_numbers": [
                        {"friendly_name": "(415) 555-0100", "phone_number": "+14155550100", "iso_country": "US", "capabilities": {"voice": true}},
                        {"friendly_name": "(415) 555-0101", "phone_number": "+14155550101", "iso_country": "US"},
                        {"friendly_name": "(415) 555-0102", "phone_number": "+14155550102", "iso_country": "US"}
                    ],
                    "uri": "/2010-04-01/Accounts/AC…/AvailablePhoneNumbers/US/Local.json"
                }),
            ),
            "POST" if path.ends_with("/IncomingPhoneNumbers.json") => (
                201,
                serde_json::json!({"sid": "PN11112222333344445555666677778888", "phone_number": "+14155550100"}),
            ),
            "DELETE" => return (204, String::new()),
            "POST" if path.ends_with("/Calls.json") => (
                201,
                serde_json::json!({"sid": "CA99998888777766665555444433332222", "status": "queued"}),
            ),
            "POST" if path.contains("/Calls/") => (
                200,
                serde_json::json!({"sid": "CA99998888777766665555444433332222", "status": "in-progress"}),
            ),
            _ => (
                404,
                serde_json::json!({"code": 20404, "message": "The requested resource was not found", "status": 404}),
            ),
        };
        (status, body.to_string())
    }

    fn expected_authorization() -> Option<String> {
        Some(format!(
            "Basic {}",
            STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
        ))
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn account_path(rest: &str) -> String {
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/{rest}")
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[tokio::test]
    async fn available_searches_the_country_and_kind_and_keeps_the_limit() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let numbers = twilio
            .carrier()
            .available(NumberQuery {
                country: Country::Us,
                kind: NumberKind::Local,
                area_code: Some("415".into()),
                limit: 2,
            })
            .await
            .unwrap();
        let request = twilio.only_request();
        assert_eq!(request.method, Method::GET);
        assert_eq!(
            request.path,
            account_path("AvailablePhoneNumbers/US/Local.json")
        );
        assert_eq!(request.authorization, expected_authorization());
        assert_eq!(
            request.query,
            pairs(&[("AreaCode", "415"), ("PageSize", "2")])
        );
        assert!(request.form.is_empty());
        assert_eq!(
            numbers,
            vec![
                AvailableNumber {
                    phone_number: "+14155550100".into(),
                    friendly_name: "(415) 555-0100".into(),
                    country: Country::Us,
                    kind: NumberKind::Local,
                },
                AvailableNumber {
                    phone_number: "+14155550101".into(),
                    friendly_name: "(415) 555-0101".into(),
                    country: Country::Us,
                    kind: NumberKind::Local,
                },
            ]
        );
    }

    #[tokio::test]
    async fn available_names_mobile_and_toll_free_and_omits_a_missing_area_code() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let carrier = twilio.carrier();
        for (country, kind) in [
            (Country::Au, NumberKind::Mobile),
            (Country::Gb, NumberKind::TollFree),
        ] {
            let numbers = carrier
                .available(NumberQuery {
                    country,
                    kind,
                    area_code: None,
                    limit: 5,
                })
                .await
                .unwrap();
            assert_eq!(numbers.len(), 3);
            assert!(
                numbers
                    .iter()
                    .all(|n| n.country == country && n.kind == kind)
            );
        }
        let requests = twilio.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                account_path("AvailablePhoneNumbers/AU/Mobile.json"),
                account_path("AvailablePhoneNumbers/GB/TollFree.json"),
            ]
        );
        for request in &requests {
            assert_eq!(request.query, pairs(&[("PageSize", "5")]));
        }
    }

    #[tokio::test]
    async fn provision_buys_the_number_and_points_it_at_the_voice_url() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let provisioned = twilio
            .carrier()
            .provision(
                "+14155550100",
                "https://engine.example/carrier/twilio/voice?agent_id=7&x=1",
            )
            .await
            .unwrap();
        assert_eq!(
            provisioned,
            Provisioned {
                carrier_sid: "PN11112222333344445555666677778888".into()
            }
        );
        let request = twilio.only_request();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, account_path("IncomingPhoneNumbers.json"));
        assert_eq!(request.authorization, expected_authorization());
        assert_eq!(request.content_type.as_deref(), FORM);
        assert!(request.query.is_empty());
        assert_eq!(
            request.form,
            pairs(&[
                ("PhoneNumber", "+14155550100"),
                (
                    "VoiceUrl",
                    "https://engine.example/carrier/twilio/voice?agent_id=7&x=1"
                ),
                ("VoiceMethod", "POST"),
            ])
        );
    }

    #[tokio::test]
    async fn release_deletes_the_number_with_its_sid_percent_encoded() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let carrier = twilio.carrier();
        carrier
            .release("PN11112222333344445555666677778888")
            .await
            .unwrap();
        carrier.release("PN1/../Calls?x=1").await.unwrap();
        let requests = twilio.requests();
        assert_eq!(requests.len(), 2);
        for request in &requests {
            assert_eq!(request.method, Method::DELETE);
            assert_eq!(request.authorization, expected_authorization());
            assert!(request.query.is_empty() && request.form.is_empty());
        }
        assert_eq!(
            requests[0].path,
            account_path("IncomingPhoneNumbers/PN11112222333344445555666677778888.json")
        );
        assert_eq!(
            requests[1].path,
            account_path("IncomingPhoneNumbers/PN1%2F..%2FCalls%3Fx=1.json")
        );
        assert!(matches!(
            carrier.release("  ").await,
            Err(CarrierError::Invalid(_))
        ));
        assert_eq!(twilio.requests().len(), 2, "an empty sid is not sent");
    }

    fn a_dial(detect_machine: bool) -> Dial {
        Dial {
            call_id: 42,
            to: "+61255501234".into(),
            from: "+14155550100".into(),
            stream_url: "wss://engine.example/media/twilio".into(),
            token: "st_abc&\"def".into(),
            status_callback: "https://engine.example/carrier/twilio/status?call_id=42".into(),
            ring_timeout_secs: 25,
            detect_machine,
        }
    }

    #[tokio::test]
    async fn dial_places_the_call_with_its_twiml_callbacks_and_machine_detection() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let placed = twilio.carrier().dial(a_dial(true)).await.unwrap();
        assert_eq!(
            placed,
            Placed {
                carrier_call_id: "CA99998888777766665555444433332222".into()
            }
        );
        let request = twilio.only_request();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, account_path("Calls.json"));
        assert_eq!(request.authorization, expected_authorization());
        assert_eq!(request.content_type.as_deref(), FORM);
        let twiml = "<Response><Connect><Stream url=\"wss://engine.example/media/twilio\"><Parameter name=\"token\" value=\"st_abc&amp;&quot;def\"/><Parameter name=\"call_id\" value=\"42\"/></Stream></Connect></Response>";
        assert_eq!(
            request.form,
            pairs(&[
                ("To", "+61255501234"),
                ("From", "+14155550100"),
                ("Twiml", twiml),
                (
                    "StatusCallback",
                    "https://engine.example/carrier/twilio/status?call_id=42"
                ),
                ("StatusCallbackMethod", "POST"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
                ("Timeout", "25"),
                ("MachineDetection", "Enable"),
            ])
        );
    }

    #[tokio::test]
    async fn dial_without_machine_detection_sends_no_machine_detection() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        twilio.carrier().dial(a_dial(false)).await.unwrap();
        let request = twilio.only_request();
        let names: Vec<&str> = request.form.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "To",
                "From",
                "Twiml",
                "StatusCallback",
                "StatusCallbackMethod",
                "StatusCallbackEvent",
                "StatusCallbackEvent",
                "StatusCallbackEvent",
                "StatusCallbackEvent",
                "Timeout",
            ]
        );
    }

    #[tokio::test]
    async fn hang_up_completes_the_call() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        twilio
            .carrier()
            .hang_up("CA99998888777766665555444433332222")
            .await
            .unwrap();
        let request = twilio.only_request();
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.path,
            account_path("Calls/CA99998888777766665555444433332222.json")
        );
        assert_eq!(request.authorization, expected_authorization());
        assert_eq!(request.content_type.as_deref(), FORM);
        assert_eq!(request.form, pairs(&[("Status", "completed")]));
    }

    #[tokio::test]
    async fn transfer_redirects_the_call_to_dial_the_digits() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        let carrier = twilio.carrier();
        carrier
            .transfer(
                "CA99998888777766665555444433332222",
                "+61 (2) 5550-1234</Dial>",
            )
            .await
            .unwrap();
        let request = twilio.only_request();
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.path,
            account_path("Calls/CA99998888777766665555444433332222.json")
        );
        assert_eq!(request.authorization, expected_authorization());
        assert_eq!(
            request.form,
            pairs(&[("Twiml", "<Response><Dial>+61255501234</Dial></Response>")])
        );
        assert!(matches!(
            carrier.transfer("CA1", "+").await,
            Err(CarrierError::Invalid(_))
        ));
        assert_eq!(twilio.requests().len(), 1, "no digits, no request");
    }

    #[tokio::test]
    async fn a_trailing_slash_on_the_api_url_changes_nothing() {
        let twilio = FakeTwilio::start(twilio_reply).await;
        carrier_at(&format!("{}/", twilio.base))
            .hang_up("CA1")
            .await
            .unwrap();
        assert_eq!(twilio.only_request().path, account_path("Calls/CA1.json"));
    }

    #[tokio::test]
    async fn twilios_json_error_becomes_refused_with_code_and_message() {
        let twilio = FakeTwilio::start(|_| {
            (
                400,
                serde_json::json!({
                    "code": 21211,
                    "message": "The 'To' number 5551234 is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211",
                    "status": 400
                })
                .to_string(),
            )
        })
        .await;
        let error = twilio.carrier().dial(a_dial(false)).await.unwrap_err();
        match &error {
            CarrierError::Refused { status, message } => {
                assert_eq!(*status, 400);
                assert_eq!(
                    message,
                    "21211: The 'To' number 5551234 is not a valid phone number."
                );
            }
            other => panic!("expected Refused, got {other:?}"),
        }
        assert!(!error.to_string().contains(AUTH_TOKEN));
    }

    #[tokio::test]
    async fn a_non_json_error_body_is_kept_to_its_first_300_chars() {
        let twilio = FakeTwilio::start(|_| (503, "x".repeat(1000))).await;
        let error = twilio.carrier().hang_up("CA1").await.unwrap_err();
        match error {
            CarrierError::Refused { status, message } => {
                assert_eq!(status, 503);
                assert_eq!(message, "x".repeat(300));
            }
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreadable_success_body_is_refused() {
        let twilio = FakeTwilio::start(|_| (201, "<html>not json</html>".into())).await;
        let error = twilio
            .carrier()
            .provision("+14155550100", "https://engine.example/voice")
            .await
            .unwrap_err();
        assert!(
            matches!(error, CarrierError::Refused { status: 201, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_names_no_secret() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let error = carrier_at(&base).hang_up("CA1").await.unwrap_err();
        let CarrierError::Unreachable(message) = &error else {
            panic!("expected Unreachable, got {error:?}");
        };
        assert!(!message.is_empty());
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(AUTH_TOKEN), "{shown}");
        assert!(!shown.contains(ACCOUNT_SID), "{shown}");
    }

    #[test]
    fn debug_hides_the_auth_token() {
        let shown = format!("{:?}", carrier_at(DEFAULT_API_URL));
        assert!(!shown.contains(AUTH_TOKEN), "{shown}");
    }

    #[test]
    fn stream_twiml_escapes_its_attribute_values() {
        assert_eq!(
            stream_twiml("wss://engine.example/media/twilio?a=1&b=<2>", "t&k\"n'", -7),
            "<Response><Connect><Stream url=\"wss://engine.example/media/twilio?a=1&amp;b=&lt;2&gt;\"><Parameter name=\"token\" value=\"t&amp;k&quot;n&apos;\"/><Parameter name=\"call_id\" value=\"-7\"/></Stream></Connect></Response>"
        );
    }

    fn status(fields: &[(&str, &str)]) -> Option<CallProgress> {
        let form: HashMap<String, String> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_status(&form)
    }

    #[test]
    fn parse_status_reads_every_call_status() {
        let cases = [
            ("queued", Some(CallProgress::Initiated)),
            ("initiated", Some(CallProgress::Initiated)),
            ("ringing", Some(CallProgress::Ringing)),
            (
                "in-progress",
                Some(CallProgress::Answered { machine: false }),
            ),
            (
                "completed",
                Some(CallProgress::Completed { duration_secs: 0 }),
            ),
            ("busy", Some(CallProgress::Busy)),
            ("no-answer", Some(CallProgress::NoAnswer)),
            ("failed", Some(CallProgress::Failed)),
            ("canceled", Some(CallProgress::Failed)),
            ("ringing-ish", None),
            ("", None),
        ];
        for (call_status, expected) in cases {
            assert_eq!(
                status(&[("CallSid", "CA1"), ("CallStatus", call_status)]),
                expected,
                "{call_status}"
            );
        }
        assert_eq!(status(&[("CallSid", "CA1")]), None);
    }

    #[test]
    fn parse_status_tells_machines_from_people() {
        for (answered_by, machine) in [
            ("machine_start", true),
            ("machine_end_beep", true),
            ("machine_end_silence", true),
            ("machine_end_other", true),
            ("fax", true),
            ("human", false),
            ("unknown", false),
        ] {
            assert_eq!(
                status(&[("CallStatus", "in-progress"), ("AnsweredBy", answered_by)]),
                Some(CallProgress::Answered { machine }),
                "{answered_by}"
            );
        }
    }

    #[test]
    fn parse_status_reads_the_duration_of_a_completed_call() {
        assert_eq!(
            status(&[("CallStatus", "completed"), ("CallDuration", "73")]),
            Some(CallProgress::Completed { duration_secs: 73 })
        );
        assert_eq!(
            status(&[("CallStatus", "completed"), ("CallDuration", "")]),
            Some(CallProgress::Completed { duration_secs: 0 })
        );
        assert_eq!(
            status(&[("CallStatus", "completed"), ("CallDuration", "-3")]),
            Some(CallProgress::Completed { duration_secs: 0 })
        );
    }
}
