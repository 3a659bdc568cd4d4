-- The program dashboard (network/dashboard.go) and program metrics (network/metrics.go).
--
-- Each conversation's latest review, for every conversation of a program at once, read from
-- the index alone (conversation_id, id DESC with the action): an index-only scan in
-- conversation order, no sort and no heap fetch per review. It covers what
-- network_reviews_conversation serves (the retract check), which stays for now.
CREATE INDEX network_reviews_latest ON network_reviews (conversation_id, id DESC) INCLUDE (action);
