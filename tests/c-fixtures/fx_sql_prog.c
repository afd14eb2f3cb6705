/* fx_sql_prog: a C program on the system's libsqlite3 whose SQL functions (scalar and
 * aggregate), collation and sqlite3_exec row callback are the program's own, keeping their
 * state in the program's globals. Prints every row and what the callbacks counted. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rows, func_calls, collations;
static long long agg_sum, agg_n;

static int row(void *tag, int n, char **vals, char **names) {
    rows++;
    printf("%s:", (const char *)tag);
    for (int i = 0; i < n; i++)
        printf(" %s=%s", names[i], vals[i] ? vals[i] : "NULL");
    printf("\n");
    return 0;
}

static void reverse(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    func_calls++;
    if (argc != 1 || sqlite3_value_type(argv[0]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    const unsigned char *t = sqlite3_value_text(argv[0]);
    char buf[256];
    size_t n = strlen((const char *)t);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)t[n - 1 - i];
    buf[n] = 0;
    sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
}

static void weighted(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    func_calls++;
    (void)argc;
    sqlite3_result_int64(ctx, sqlite3_value_int64(argv[0]) * 100 + sqlite3_value_int64(argv[1]));
}

static void step(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)ctx;
    (void)argc;
    func_calls++;
    agg_sum += sqlite3_value_int64(argv[0]);
    agg_n++;
}

static void final(sqlite3_context *ctx) {
    func_calls++;
    sqlite3_result_int64(ctx, agg_sum * 1000 + agg_n);
    agg_sum = agg_n = 0;
}

/* Orders strings by their last character first. */
static int backwards(void *ud, int n1, const void *a, int n2, const void *b) {
    (void)ud;
    collations++;
    const unsigned char *x = a, *y = b;
    for (int i = n1 - 1, j = n2 - 1; i >= 0 && j >= 0; i--, j--)
        if (x[i] != y[j])
            return x[i] < y[j] ? -1 : 1;
    return n1 - n2;
}

static void run(sqlite3 *db, const char *tag, const char *sql) {
    if (sqlite3_exec(db, sql, row, (void *)tag, NULL) != SQLITE_OK)
        printf("%s: error: %s\n", tag, sqlite3_errmsg(db));
}

int main(void) {
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return 1;
    sqlite3_create_function(db, "reverse", 1, SQLITE_UTF8, NULL, reverse, NULL, NULL);
    sqlite3_create_function(db, "weighted", 2, SQLITE_UTF8, NULL, weighted, NULL, NULL);
    sqlite3_create_function(db, "tally", 1, SQLITE_UTF8, NULL, NULL, step, final);
    sqlite3_create_collation(db, "BACKWARDS", SQLITE_UTF8, NULL, backwards);
    run(db, "setup",
        "CREATE TABLE t(name TEXT, grp INTEGER, score INTEGER);"
        "INSERT INTO t VALUES ('alpha', 1, 10), ('bravo', 1, 20), ('charlie', 2, 30),"
        " ('delta', 2, NULL), (NULL, 3, 50), ('echo', 3, 60), ('foxtrot', 1, 70);");
    run(db, "rev", "SELECT name, reverse(name) AS r FROM t ORDER BY rowid;");
    run(db, "weighted", "SELECT name, weighted(grp, score) AS w FROM t WHERE score IS NOT NULL ORDER BY w;");
    run(db, "tally", "SELECT grp, tally(score) AS s, count(*) AS n FROM t GROUP BY grp ORDER BY grp;");
    run(db, "collate", "SELECT name FROM t WHERE name IS NOT NULL ORDER BY name COLLATE BACKWARDS;");
    run(db, "nested", "SELECT reverse(reverse(name)) = name AS same, count(*) AS n FROM t GROUP BY same;");
    run(db, "bad", "SELECT nosuch(1);");
    printf("rows %d, function calls %d, collation calls %s\n", rows, func_calls, collations > 0 ? "> 0" : "0");
    sqlite3_close(db);
    return 0;
}
