-- The Keylime verifier's tables as its Alembic migrations leave them at head a59cc9366774, written for attestload
-- from the push-protocol spec (section 5). It must match what an unmodified verifier creates (types, nullability,
-- keys, sequences, constraint and index names), because attestload enrolls into real verifier databases and the
-- simulated verifier uses the same tables. Every statement is idempotent.

CREATE TABLE IF NOT EXISTS alembic_version_cloud_verifier (
    version_num varchar(32) NOT NULL,
    CONSTRAINT alembic_version_cloud_verifier_pkc PRIMARY KEY (version_num)
);

-- IMA runtime policies. IMA is only verified when generator > 1.
CREATE TABLE IF NOT EXISTS allowlists (
    id serial NOT NULL,
    name varchar(255) NOT NULL,
    tpm_policy text,
    ima_policy text,
    checksum varchar(128),
    generator integer,
    CONSTRAINT allowlists_pkey PRIMARY KEY (id),
    CONSTRAINT uniq_allowlists0name UNIQUE (name)
);
CREATE INDEX IF NOT EXISTS ix_allowlists_checksum ON allowlists (checksum);

-- Measured-boot policies. A NULL mb_policy disables measured boot for the agents pointing at the row.
CREATE TABLE IF NOT EXISTS mbpolicies (
    id serial NOT NULL,
    name varchar(255) NOT NULL,
    mb_policy text,
    CONSTRAINT mbpolicies_pkey PRIMARY KEY (id),
    CONSTRAINT uniq_mbpolicies_name UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS verifiermain (
    agent_id varchar(80) NOT NULL,
    v varchar(45),
    ip varchar(255),
    port integer,
    operational_state integer,
    public_key varchar(500),
    tpm_policy text,
    meta_data text,
    revocation_key varchar(2800),
    tpm_version integer,
    accept_tpm_hash_algs text,
    accept_tpm_encryption_algs text,
    accept_tpm_signing_algs text,
    hash_alg varchar(10),
    enc_alg varchar(10),
    sign_alg varchar(10),
    ima_sign_verification_keys varchar(1000),
    verifier_id varchar(100),
    verifier_ip varchar(255),
    verifier_port integer,
    boottime integer,
    ima_pcrs text,
    pcr10 bytea,
    next_ima_ml_entry integer,
    severity_level integer,
    last_event_id varchar(100),
    learned_ima_keyrings text,
    supported_version varchar(50),
    ak_tpm varchar(500),
    mtls_cert varchar(2084),
    attestation_count integer,
    ima_policy_id integer,
    tpm_clockinfo text,
    last_received_quote integer,
    last_successful_attestation integer,
    mb_policy_id integer,
    accept_attestations boolean DEFAULT true NOT NULL,
    consecutive_attestation_failures integer,
    CONSTRAINT verifiermain_pkey PRIMARY KEY (agent_id),
    CONSTRAINT fk_verifiermain_allowlists FOREIGN KEY (ima_policy_id) REFERENCES allowlists (id),
    CONSTRAINT fk_verifiermain_mbpolicies FOREIGN KEY (mb_policy_id) REFERENCES mbpolicies (id)
);

-- Push attestations (migration 870c218abd9a). Timestamps are ISO-8601 text, as the verifier stores them.
CREATE TABLE IF NOT EXISTS attestations (
    agent_id varchar(80) NOT NULL,
    index integer NOT NULL,
    stage varchar(25) DEFAULT 'awaiting_evidence' NOT NULL,
    evaluation varchar(10) DEFAULT 'pending' NOT NULL,
    failure_reason varchar(25),
    system_info__boot_time varchar(32) NOT NULL,
    capabilities_received_at varchar(32) NOT NULL,
    challenges_expire_at varchar(32),
    evidence_received_at varchar(32),
    verification_completed_at varchar(32),
    CONSTRAINT attestations_pkey PRIMARY KEY (agent_id, index),
    CONSTRAINT attestations_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES verifiermain (agent_id)
);

CREATE TABLE IF NOT EXISTS evidence_items (
    id serial NOT NULL,
    agent_id varchar(80) NOT NULL,
    attestation_index integer NOT NULL,
    evidence_class varchar(20) NOT NULL,
    evidence_type varchar(30) NOT NULL,
    capabilities__component_version varchar(20),
    capabilities__evidence_version varchar(20),
    capabilities__signature_schemes text,
    capabilities__hash_algorithms text,
    capabilities__available_subjects text,
    capabilities__certification_keys text,
    capabilities__entry_count integer,
    capabilities__supports_partial_access boolean,
    capabilities__appendable boolean,
    capabilities__formats text,
    capabilities__meta text,
    chosen_parameters__challenge bytea,
    chosen_parameters__signature_scheme varchar(20),
    chosen_parameters__hash_algorithm varchar(20),
    chosen_parameters__selected_subjects text,
    chosen_parameters__certification_key text,
    chosen_parameters__starting_offset integer,
    chosen_parameters__entry_count integer,
    chosen_parameters__format varchar(255),
    chosen_parameters__meta text,
    data__subject_data text,
    data__message bytea,
    data__signature bytea,
    data__entry_count integer,
    data__entries text,
    data__meta text,
    results__certified_entry_count integer,
    results__meta text,
    CONSTRAINT evidence_items_pkey PRIMARY KEY (id),
    CONSTRAINT evidence_items_agent_id_attestation_index_fkey FOREIGN KEY (agent_id, attestation_index)
        REFERENCES attestations (agent_id, index)
);

-- PoP sessions (migration 5a8b2c3d4e6f). agent_id deliberately has no foreign key in Keylime.
CREATE TABLE IF NOT EXISTS sessions (
    session_id varchar(36) NOT NULL,
    token_hash varchar(64) NOT NULL,
    token_salt varchar(32) NOT NULL,
    agent_id varchar(80),
    active boolean,
    nonce bytea,
    hash_algorithm varchar(15),
    signing_scheme varchar(15),
    ak_attest bytea,
    ak_sign bytea,
    nonce_created_at varchar(32),
    nonce_expires_at varchar(32),
    pop_received_at varchar(32),
    token_expires_at varchar(32),
    CONSTRAINT sessions_pkey PRIMARY KEY (session_id)
);
CREATE INDEX IF NOT EXISTS ix_sessions_agent_id ON sessions (agent_id);

-- A fresh schema is at head; an existing version row (the verifier's own) is left alone.
INSERT INTO alembic_version_cloud_verifier (version_num)
SELECT 'a59cc9366774'
WHERE NOT EXISTS (SELECT 1 FROM alembic_version_cloud_verifier);
