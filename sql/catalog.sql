--
-- catalog: a fresh install of the current version and an install of 0.1.0
-- updated step by step to it have the same catalog
--
-- withdraw--<current>.sql is written by hand beside the upgrade scripts;
-- this file is what keeps the two in step.  pg_temp.withdraw_catalog()
-- describes every object of the extension as rows of text (kind, object,
-- detail): the members of the extension (pg_depend deptype 'e') and what
-- hangs off them (columns, defaults, identity, constraints, indexes,
-- triggers, rules, policies, sequences' parameters, function and view
-- definitions line by line with their settings, privileges and initial
-- privileges one grantee and privilege a row, comments, what each object
-- depends on), the extension's row and its config tables, the roles it
-- creates, and the rows of the state machine.  Both installs are described
-- into temp tables and compared as multisets: every row on one side only is
-- printed (none expected).  A row printed here is a schema change made in
-- only one of the two kinds of script: "fresh only" is in
-- withdraw--<current>.sql and missing from the upgrade scripts, "upgraded
-- only" the other way round.
--
-- Normalised, not hidden: the OIDs in the names of the internal triggers of
-- foreign keys (RI_ConstraintTrigger_a_16412 -> RI_ConstraintTrigger_a_N);
-- the order of the entries of an ACL and of the config tables (a row each);
-- a NULL ACL is compared as the default it stands for (acldefault).
-- Not compared, as no part of the schema: columns dropped by an upgrade
-- (invisible: positions count the live columns), atthasmissing and
-- attmissingval (the fast default of a column added to a table that had
-- rows), OIDs, relfilenodes, statistics.
--
CREATE FUNCTION pg_temp.withdraw_catalog(OUT kind text, OUT object text, OUT detail text)
RETURNS SETOF record LANGUAGE sql AS $catalog$
WITH ext AS (
	SELECT * FROM pg_extension WHERE extname = 'withdraw'
),
-- the members of the extension
member AS (
	SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
	WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
),
rel AS (
	SELECT c.* FROM pg_class c JOIN member m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
),
idx AS (
	SELECT i.*, c.relname AS indexname FROM pg_index i JOIN rel ON rel.oid = i.indrelid
	JOIN pg_class c ON c.oid = i.indexrelid
),
con AS (
	SELECT c.* FROM pg_constraint c JOIN rel ON rel.oid = c.conrelid
),
trg AS (
	SELECT t.* FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
),
rul AS (
	SELECT r.* FROM pg_rewrite r JOIN rel ON rel.oid = r.ev_class
),
pol AS (
	SELECT p.* FROM pg_policy p JOIN rel ON rel.oid = p.polrelid
),
fn AS (
	SELECT p.* FROM pg_proc p JOIN member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
),
-- every object described: the members and what hangs off them
obj AS (
	SELECT classid, objid, objsubid FROM member
	UNION SELECT 'pg_class'::regclass, indexrelid, 0 FROM idx
	UNION SELECT 'pg_constraint'::regclass, oid, 0 FROM con
	UNION SELECT 'pg_trigger'::regclass, oid, 0 FROM trg
	UNION SELECT 'pg_rewrite'::regclass, oid, 0 FROM rul
	UNION SELECT 'pg_policy'::regclass, oid, 0 FROM pol
	UNION SELECT 'pg_class'::regclass, a.attrelid, a.attnum FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
	WHERE a.attnum > 0 AND NOT a.attisdropped
),
col AS (
	SELECT a.*, rel.relkind,
		   row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position
	FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
	WHERE a.attnum > 0 AND NOT a.attisdropped
),
-- privileges: one row per grantee, privilege and grantor
acl AS (
	SELECT 'pg_class'::regclass AS classid, rel.oid AS objid, 0 AS objsubid,
		   coalesce(rel.relacl, acldefault(CASE WHEN rel.relkind = 'S' THEN 's' ELSE 'r' END::"char", rel.relowner)) AS acl
	FROM rel
	UNION ALL
	SELECT 'pg_class'::regclass, col.attrelid, col.attnum, col.attacl FROM col WHERE col.attacl IS NOT NULL
	UNION ALL
	SELECT 'pg_proc'::regclass, fn.oid, 0, coalesce(fn.proacl, acldefault('f'::"char", fn.proowner)) FROM fn
	UNION ALL
	SELECT 'pg_namespace'::regclass, n.oid, 0, coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))
	FROM pg_namespace n JOIN member m ON m.classid = 'pg_namespace'::regclass AND m.objid = n.oid
),
described AS (
	-- the extension itself
	SELECT 'extension' AS kind, ext.extname::text AS object,
		   format('version %s, schema %s, relocatable %s, owner %s, comment %s', ext.extversion,
				  ext.extnamespace::regnamespace, ext.extrelocatable, pg_get_userbyid(ext.extowner),
				  obj_description(ext.oid, 'pg_extension')) AS detail
	FROM ext
	UNION ALL
	SELECT 'config table', c.cfg::regclass::text, format('condition %L', ext.extcondition[c.n])
	FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS c(cfg, n)
	UNION ALL
	SELECT 'member', pg_describe_object(classid, objid, objsubid), NULL FROM member
	UNION ALL
	-- relations
	SELECT 'relation', rel.oid::regclass::text,
		   format('kind %s, persistence %s, owner %s, options %s, tablespace %s, row security %s/%s, replica identity %s, has toast %s, partition %s, of type %s',
				  rel.relkind, rel.relpersistence, pg_get_userbyid(rel.relowner), rel.reloptions,
				  rel.reltablespace, rel.relrowsecurity, rel.relforcerowsecurity, rel.relreplident,
				  rel.reltoastrelid <> 0, rel.relispartition, rel.reloftype::regtype)
	FROM rel
	UNION ALL
	SELECT 'column', col.attrelid::regclass || '.' || quote_ident(col.attname),
		   format('position %s, type %s, not null %s, default %s, identity %s, generated %s, collation %s, storage %s, statistics %s, compression %s, local %s, inherited %s',
				  col.position, format_type(col.atttypid, col.atttypmod), col.attnotnull,
				  pg_get_expr(d.adbin, d.adrelid), nullif(col.attidentity, ''), nullif(col.attgenerated, ''),
				  (SELECT quote_ident(collname) FROM pg_collation WHERE oid = col.attcollation),
				  col.attstorage, col.attstattarget, nullif(col.attcompression, ''), col.attislocal,
				  col.attinhcount)
	FROM col LEFT JOIN pg_attrdef d ON d.adrelid = col.attrelid AND d.adnum = col.attnum
	UNION ALL
	SELECT 'index', idx.indrelid::regclass || ' ' || quote_ident(idx.indexname),
		   format('%s; primary %s, unique %s, immediate %s, clustered %s, replica identity %s, valid %s, options %s',
				  pg_get_indexdef(idx.indexrelid), idx.indisprimary, idx.indisunique, idx.indimmediate,
				  idx.indisclustered, idx.indisreplident, idx.indisvalid,
				  (SELECT reloptions FROM pg_class WHERE oid = idx.indexrelid))
	FROM idx
	UNION ALL
	SELECT 'constraint', con.conrelid::regclass || ' ' || quote_ident(con.conname),
		   format('%s; type %s, deferrable %s, deferred %s, validated %s, index %s, local %s',
				  pg_get_constraintdef(con.oid), con.contype, con.condeferrable, con.condeferred,
				  con.convalidated, con.conindid::regclass, con.conislocal)
	FROM con
	UNION ALL
	SELECT 'trigger', trg.tgrelid::regclass || ' ' || quote_ident(trg.tgname),
		   format('%s; enabled %s, internal %s, constraint %s', pg_get_triggerdef(trg.oid), trg.tgenabled,
				  trg.tgisinternal, (SELECT conname FROM pg_constraint WHERE oid = trg.tgconstraint))
	FROM trg
	UNION ALL
	SELECT 'rule', rul.ev_class::regclass || ' ' || quote_ident(rul.rulename), pg_get_ruledef(rul.oid)
	FROM rul WHERE rul.rulename <> '_RETURN'
	UNION ALL
	SELECT 'policy', pol.polrelid::regclass || ' ' || quote_ident(pol.polname),
		   format('command %s, permissive %s, roles %s, using %s, check %s', pol.polcmd, pol.polpermissive,
				  (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END ORDER BY 1)
				   FROM unnest(pol.polroles) r),
				  pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid))
	FROM pol
	UNION ALL
	SELECT 'sequence', s.seqrelid::regclass::text,
		   format('type %s, start %s, increment %s, min %s, max %s, cache %s, cycle %s, owned by %s',
				  s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
				  (SELECT string_agg(pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || ' (' || d.deptype::text || ')', ', ')
				   FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
				   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
	FROM pg_sequence s JOIN rel ON rel.oid = s.seqrelid
	UNION ALL
	-- views: options and definition, a line a row
	SELECT 'view', rel.oid::regclass::text, format('options %s', rel.reloptions)
	FROM rel WHERE rel.relkind IN ('v', 'm')
	UNION ALL
	SELECT 'view', rel.oid::regclass::text, format('line %s: %s', l.n, l.line)
	FROM rel, regexp_split_to_table(pg_get_viewdef(rel.oid), E'\n') WITH ORDINALITY AS l(line, n)
	WHERE rel.relkind IN ('v', 'm')
	UNION ALL
	-- functions: their attributes, and their definition a line a row
	SELECT 'function', fn.oid::regprocedure::text,
		   format('kind %s, owner %s, security definer %s, volatility %s, parallel %s, strict %s, leakproof %s, cost %s, rows %s, config %s, returns set %s',
				  fn.prokind, pg_get_userbyid(fn.proowner), fn.prosecdef, fn.provolatile, fn.proparallel,
				  fn.proisstrict, fn.proleakproof, fn.procost, fn.prorows, fn.proconfig, fn.proretset)
	FROM fn
	UNION ALL
	SELECT 'function', fn.oid::regprocedure::text, format('line %s: %s', l.n, l.line)
	FROM fn, regexp_split_to_table(pg_get_functiondef(fn.oid), E'\n') WITH ORDINALITY AS l(line, n)
	WHERE fn.prokind IN ('f', 'p')
	UNION ALL
	-- privileges of the objects and of their columns, and their initial privileges
	SELECT 'privilege', pg_describe_object(acl.classid, acl.objid, acl.objsubid),
		   format('%s to %s%s, granted by %s', e.privilege_type,
				  CASE WHEN e.grantee = 0 THEN 'public' ELSE pg_get_userbyid(e.grantee) END,
				  CASE WHEN e.is_grantable THEN ' with grant option' ELSE '' END, pg_get_userbyid(e.grantor))
	FROM acl, aclexplode(acl.acl) e
	UNION ALL
	SELECT 'initial privilege', pg_describe_object(i.classoid, i.objoid, i.objsubid),
		   format('%s: %s to %s%s, granted by %s', i.privtype, e.privilege_type,
				  CASE WHEN e.grantee = 0 THEN 'public' ELSE pg_get_userbyid(e.grantee) END,
				  CASE WHEN e.is_grantable THEN ' with grant option' ELSE '' END, pg_get_userbyid(e.grantor))
	FROM pg_init_privs i
	JOIN obj o ON (o.classid, o.objid, o.objsubid) = (i.classoid, i.objoid, i.objsubid),
		aclexplode(i.initprivs) e
	UNION ALL
	-- default privileges in the extension's schemas
	SELECT 'default privilege', format('%s in %s for %s', a.defaclobjtype, a.defaclnamespace::regnamespace,
									   pg_get_userbyid(a.defaclrole)), a.defaclacl::text
	FROM pg_default_acl a JOIN member m ON m.classid = 'pg_namespace'::regclass AND m.objid = a.defaclnamespace
	UNION ALL
	-- comments of every object described (columns, constraints, triggers ... included)
	SELECT 'comment', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
	FROM pg_description d JOIN obj o ON (o.classid, o.objid, o.objsubid) = (d.classoid, d.objoid, d.objsubid)
	UNION ALL
	-- what each object depends on (the links among them and to the rest of the catalog)
	SELECT 'dependency', pg_describe_object(d.classid, d.objid, d.objsubid),
		   format('%s on %s', d.deptype, pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
	FROM pg_depend d JOIN obj o ON (o.classid, o.objid) = (d.classid, d.objid) AND o.objsubid = d.objsubid
	WHERE d.deptype <> 'e'
	UNION ALL
	-- the roles the scripts create (cluster-wide: they outlive the extension)
	SELECT 'role', r.rolname::text,
		   format('superuser %s, inherit %s, create role %s, create db %s, login %s, replication %s, bypass rls %s, connection limit %s, member of %s, comment %s',
				  r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
				  r.rolbypassrls, r.rolconnlimit,
				  (SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members am
				   JOIN pg_roles g ON g.oid = am.roleid WHERE am.member = r.oid),
				  shobj_description(r.oid, 'pg_authid'))
	FROM pg_roles r WHERE r.rolname IN ('withdraw_user', 'withdraw_admin', 'withdraw_webhook', 'withdraw_worker', 'withdraw_auditor')
	UNION ALL
	-- the state machine is data the scripts write
	SELECT 'state transition', t.from_state || ' -> ' || t.to_state, NULL FROM withdraw.state_transition t
)
SELECT kind,
	   regexp_replace(object, 'RI_ConstraintTrigger_([ac])_[0-9]+', 'RI_ConstraintTrigger_\1_N', 'g'),
	   regexp_replace(detail, 'RI_ConstraintTrigger_([ac])_[0-9]+', 'RI_ConstraintTrigger_\1_N', 'g')
FROM described
$catalog$;
-- case: a fresh install of the default version (its own full script)
DROP EXTENSION withdraw CASCADE;
CREATE EXTENSION withdraw;
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
CREATE TEMP TABLE catalog_fresh AS SELECT * FROM pg_temp.withdraw_catalog();
-- case: the first release, updated step by step to the default version
DROP EXTENSION withdraw CASCADE;
CREATE EXTENSION withdraw VERSION '0.1.0';
ALTER EXTENSION withdraw UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
CREATE TEMP TABLE catalog_upgraded AS SELECT * FROM pg_temp.withdraw_catalog();
-- case: the two catalogs are the same: no row on one side only
SELECT 'fresh only' AS side, * FROM (TABLE catalog_fresh EXCEPT ALL TABLE catalog_upgraded) f
UNION ALL
SELECT 'upgraded only', * FROM (TABLE catalog_upgraded EXCEPT ALL TABLE catalog_fresh) u
ORDER BY kind, object, detail, side;
-- case: what was compared: many rows, of every kind
SELECT count(*) > 1500 AS many_rows, count(*) = (SELECT count(*) FROM catalog_upgraded) AS as_many_upgraded
FROM catalog_fresh;
SELECT k AS kind, count(c.kind) > 0 AS described
FROM unnest(ARRAY['extension', 'config table', 'member', 'relation', 'column', 'index', 'constraint',
				  'trigger', 'sequence', 'view', 'function', 'privilege', 'initial privilege', 'comment',
				  'dependency', 'role', 'state transition']) AS k
LEFT JOIN catalog_fresh c ON c.kind = k
GROUP BY k ORDER BY k;
-- case: the roles (cluster-wide, so the installs above found them): where
-- none exists, the fresh install and the updated 0.1.0 create the same ones
-- (in transactions rolled back, which keep the roles and the extension)
BEGIN;
DROP EXTENSION withdraw CASCADE;
DROP OWNED BY withdraw_user, withdraw_admin, withdraw_auditor, withdraw_webhook, withdraw_worker;
DROP ROLE withdraw_user, withdraw_admin, withdraw_auditor, withdraw_webhook, withdraw_worker;
CREATE EXTENSION withdraw;
SELECT string_agg(object || ': ' || detail, E'\n' ORDER BY object) AS fresh_roles
FROM pg_temp.withdraw_catalog() WHERE kind = 'role' \gset
ROLLBACK;
BEGIN;
DROP EXTENSION withdraw CASCADE;
DROP OWNED BY withdraw_user, withdraw_admin, withdraw_auditor, withdraw_webhook, withdraw_worker;
DROP ROLE withdraw_user, withdraw_admin, withdraw_auditor, withdraw_webhook, withdraw_worker;
CREATE EXTENSION withdraw VERSION '0.1.0';
ALTER EXTENSION withdraw UPDATE;
SELECT string_agg(object || ': ' || detail, E'\n' ORDER BY object) = :'fresh_roles' AS same_roles_as_fresh
FROM pg_temp.withdraw_catalog() WHERE kind = 'role';
SELECT object AS role, detail FROM pg_temp.withdraw_catalog() WHERE kind = 'role' ORDER BY object;
ROLLBACK;
-- case: the extension is left installed fresh at the default version, with
-- the account of setup, for the files that follow
DROP EXTENSION withdraw CASCADE;
CREATE EXTENSION withdraw;
SELECT extversion FROM pg_extension WHERE extname = 'withdraw';
SELECT withdraw_account_create('zoomex', 'zoomex', 'http://127.0.0.1:9/zoomex',
                               '{"api_key": "k1", "api_secret": "s3cr3t-value"}');
SELECT name, provider, base_url FROM withdraw.accounts;
