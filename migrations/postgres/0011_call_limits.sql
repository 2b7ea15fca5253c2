-- Call limits (postgres dialect): the longest a call with an agent version may last. When it is
-- reached the agent says a short goodbye and hangs up (disposition `max-duration`). Versions made
-- before this migration get the default, 30 minutes.
ALTER TABLE agent_versions ADD COLUMN max_call_seconds BIGINT NOT NULL DEFAULT 1800;
