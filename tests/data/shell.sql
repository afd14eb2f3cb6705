-- A script for the sqlite3 shell: tables, indexes, joins, aggregates, a CTE, window
-- functions, text functions, a view, a trigger, JSON, transactions, and dot-commands.
.headers on
.mode list
CREATE TABLE city(id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, pop INTEGER);
CREATE TABLE trip(id INTEGER PRIMARY KEY, city INTEGER REFERENCES city(id), day TEXT, km REAL);
CREATE INDEX trip_city ON trip(city);
BEGIN;
INSERT INTO city(name, country, pop) VALUES ('Lisbon','PT',545000),('Porto','PT',232000),
  ('Madrid','ES',3300000),('Sevilla','ES',684000),('Lyon','FR',522000),('Nantes','FR',320000);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO trip(city, day, km) SELECT 1 + (i * 7) % 6, date('2026-01-01', '+' || (i % 365) || ' days'),
  round((i * 37 % 1000) / 7.0, 2) FROM n;
COMMIT;
SELECT c.name, count(*) AS trips, round(sum(t.km), 1) AS km FROM trip t JOIN city c ON c.id = t.city
  GROUP BY c.id ORDER BY km DESC;
SELECT country, name, pop, rank() OVER (PARTITION BY country ORDER BY pop DESC) AS r FROM city ORDER BY country, r;
SELECT upper(substr(name, 1, 3)) || '-' || length(name), printf('%08.2f', pop / 1000.0), hex(name) FROM city;
CREATE VIEW busy AS SELECT day, count(*) n FROM trip GROUP BY day HAVING n > 5;
SELECT count(*), min(day), max(day) FROM busy;
CREATE TABLE log(msg TEXT);
CREATE TRIGGER t_ins AFTER INSERT ON city BEGIN INSERT INTO log VALUES ('new ' || NEW.name); END;
INSERT INTO city(name, country, pop) VALUES ('Bilbao','ES',345000);
SELECT * FROM log;
SELECT json_object('name', name, 'pop', pop) FROM city WHERE country = 'ES';
SELECT group_concat(name, ';') FROM (SELECT name FROM city ORDER BY name);
.mode column
SELECT id, name, country FROM city WHERE pop > 400000;
.schema city
SELECT total_changes() > 0, typeof(3.5), quote('it''s'), zeroblob(3) IS NOT NULL;
