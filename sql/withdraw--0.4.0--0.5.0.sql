/* withdraw--0.4.0--0.5.0.sql: operating with real money (README).
   Sections below, one per piece of work; each names what it changes. */

\echo Use "ALTER EXTENSION withdraw UPDATE TO '0.5.0'" to load this file. \quit

-- == provider conformance (issue 15) ==

-- == callback daemon (issue 18) ==

-- == failover (issue 20) ==
-- No schema change: withdraw.workers.state may now read 'standby' (on a hot standby, from the library).

-- == payout desk (issue 17) ==

-- == restructure (issue 19) ==
