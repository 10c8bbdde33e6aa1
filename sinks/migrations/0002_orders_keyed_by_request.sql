-- An order's identity is its request ID. Order IDs are derived from the
-- input's (partition, offset), so they are unique only within one requests
-- topic's life: a recreated topic, or two topics sharing one database, would
-- reuse them, and with order_id as the primary key the idempotent upsert
-- would silently keep the older row and drop the new order. Keyed by request
-- ID, a repeat of the same request is still a no-op and no order can hide
-- another.
ALTER TABLE orders
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (request_id),
    DROP INDEX orders_request_id,
    ADD INDEX orders_order_id (order_id);
