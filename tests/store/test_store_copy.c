/* COPY text encoding, array literals and the UTF-8 check (no server). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "testutil.h"

static void expect(const char *what, const pg_copy *c, const char *want)
{
    size_t n = strlen(want);
    CHECK(!c->nomem && c->buf.len == n && memcmp(c->buf.data, want, n) == 0,
          "%s: got [%.*s] want [%s]", what, (int)c->buf.len,
          c->buf.data ? (const char *)c->buf.data : "", want);
}

int main(void)
{
    pg_copy c = {0};
    pg_copy_str(&c, "a\\b\tc\nd\re'f\"g");
    pg_copy_str(&c, NULL);
    pg_copy_str(&c, "\\N");
    pg_copy_str(&c, "");
    pg_copy_eol(&c);
    expect("escapes", &c, "a\\\\b\\tc\\nd\\re'f\"g\t\\N\t\\\\N\t\n");
    pg_copy_free(&c);

    pg_copy_int(&c, -42);
    pg_copy_real(&c, 0.1f);
    pg_copy_real(&c, NAN);
    pg_copy_double(&c, 1.0 / 3.0);
    pg_copy_double(&c, INFINITY);
    pg_copy_eol(&c);
    expect("numbers", &c, "-42\t0.100000001\t\\N\t0.33333333333333331\tInfinity\n");
    pg_copy_free(&c);

    const char *items[] = {"oak", "a,b", "q\"uote", "back\\slash", NULL, "NULL", "{x}", ""};
    pg_copy_text_array(&c, items, 8);
    pg_copy_text_array(&c, items, 0);
    pg_copy_text_array(&c, NULL, 0);
    pg_copy_eol(&c);
    expect("arrays", &c,
           "{\"oak\",\"a,b\",\"q\\\\\"uote\",\"back\\\\\\\\slash\",NULL,\"NULL\",\"{x}\",\"\"}"
           "\t{}\t\\N\n");
    pg_copy_free(&c);

    struct { const char *s; bool ok; } utf8[] = {
        {"plain", true}, {"B\xc3\xa4ume \xe6\x9c\xa8 \xf0\x9f\x8c\xb3", true},
        {"\xc3", false}, {"\xc0\xaf", false}, {"\xed\xa0\x80", false},
        {"\xf4\x90\x80\x80", false}, {"\xff", false}, {"\xe6\x9c", false},
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        CHECK(pg_utf8_valid(utf8[i].s) == utf8[i].ok, "utf8 case %zu: expected %d", i,
              utf8[i].ok);
    }
    struct { const char *in, *out; } clean[] = {
        {"ok \xe6\x9c\xa8", "ok \xe6\x9c\xa8"},
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"bad-\xc3\x28.png", "bad-\xef\xbf\xbd(.png"},
        {"\xe6\x9c", "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof clean / sizeof clean[0]; i++) {
        char *got = pg_utf8_sanitize(clean[i].in);
        CHECK(got && !strcmp(got, clean[i].out) && pg_utf8_valid(got), "sanitize case %zu: [%s]",
              i, got ? got : "(null)");
        free(got);
    }
    pg_copy_str(&c, "k\xff\t");
    pg_copy_eol(&c);
    expect("sanitized copy", &c, "k\xef\xbf\xbd\\t\n");
    CHECK(c.sanitized == 1, "sanitized count %zu", c.sanitized);
    pg_copy_free(&c);
    return TEST_RESULT();
}
