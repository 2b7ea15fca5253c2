//! The embedded responder on what the recogniser hears, with the real models: scripted booking
//! conversations in voices no other test uses (`booking`), and misheard questions matched to
//! the agent's facts by meaning (`meaning`). Needs the model files (`./scripts/fetch-models`,
//! run by `./scripts/setup`).

mod booking;
mod hints;
mod meaning;
