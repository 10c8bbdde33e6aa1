-- The read model: projections of the outcomes topic. Never the source of
-- truth for stock (the processors' partition state is); every table is
-- written idempotently (upsert by request ID) or monotonically (by the input
-- record's offset), so consuming the same outcomes twice changes nothing.

-- Sale terms, last applied SALE_CONFIGURED outcome per product.
CREATE TABLE IF NOT EXISTS sales (
    product_id     VARCHAR(64)    NOT NULL PRIMARY KEY,
    stock          BIGINT         NOT NULL,
    per_user_limit INT            NOT NULL,
    price          DECIMAL(18, 2) NOT NULL,
    starts_at_ms   BIGINT         NULL,
    ends_at_ms     BIGINT         NULL,
    src_partition  INT            NOT NULL,
    src_offset     BIGINT         NOT NULL,
    updated_at     TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
);

-- Stock projection: the newest (by input offset) remaining/stock per product.
CREATE TABLE IF NOT EXISTS stock (
    product_id    VARCHAR(64) NOT NULL PRIMARY KEY,
    stock         BIGINT      NOT NULL,
    remaining     BIGINT      NOT NULL,
    src_partition INT         NOT NULL,
    src_offset    BIGINT      NOT NULL
);

-- Accepted purchases. Unique on request ID: a repeated outcome is a no-op.
CREATE TABLE IF NOT EXISTS orders (
    order_id      VARCHAR(64)    NOT NULL PRIMARY KEY,
    request_id    VARCHAR(64)    NOT NULL,
    product_id    VARCHAR(64)    NOT NULL,
    user_id       VARCHAR(64)    NOT NULL,
    quantity      INT            NOT NULL,
    unit_price    DECIMAL(18, 2) NOT NULL,
    decided_at_ms BIGINT         NOT NULL,
    src_partition INT            NOT NULL,
    src_offset    BIGINT         NOT NULL,
    created_at    TIMESTAMP      NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY orders_request_id (request_id),
    KEY orders_user (user_id, decided_at_ms),
    KEY orders_product (product_id)
);

-- Every decision, accepted or not, for GET /api/v1/purchases/{request_id}.
CREATE TABLE IF NOT EXISTS outcomes (
    request_id    VARCHAR(64)    NOT NULL PRIMARY KEY,
    product_id    VARCHAR(64)    NOT NULL,
    kind          VARCHAR(20)    NOT NULL,
    status        VARCHAR(10)    NOT NULL,
    reason        VARCHAR(32)    NULL,
    user_id       VARCHAR(64)    NULL,
    quantity      INT            NOT NULL,
    order_id      VARCHAR(64)    NULL,
    unit_price    DECIMAL(18, 2) NULL,
    remaining     BIGINT         NOT NULL,
    user_total    INT            NOT NULL,
    decided_at_ms BIGINT         NOT NULL,
    src_partition INT            NOT NULL,
    src_offset    BIGINT         NOT NULL,
    KEY outcomes_product (product_id, status)
);

-- Units bought per (product, user): the newest total by input offset.
CREATE TABLE IF NOT EXISTS user_totals (
    product_id VARCHAR(64) NOT NULL,
    user_id    VARCHAR(64) NOT NULL,
    quantity   INT         NOT NULL,
    src_offset BIGINT      NOT NULL,
    PRIMARY KEY (product_id, user_id)
);
