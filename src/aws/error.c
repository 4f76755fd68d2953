/* AWS error answers, in every form the services use (see aws_error_parse). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <expat.h>

#include "aws/aws_internal.h"

typedef struct xml_err {
    int depth;
    int error_depth;     /* depth of the open <Error> element, 0: none */
    char *field;         /* the element being collected, or NULL */
    size_t cap;
    size_t len;
    aws_error_info *out;
} xml_err;

/* Copies a text field, stopping at a full buffer. */
static void field_append(xml_err *x, const char *s, size_t n)
{
    size_t room = x->cap - 1 - x->len;
    if (n > room)
        n = room;
    memcpy(x->field + x->len, s, n);
    x->len += n;
    x->field[x->len] = '\0';
}

static void XMLCALL xe_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    xml_err *x = ud;
    aws_error_info *o = x->out;
    x->depth++;
    x->field = NULL;
    if (strcmp(name, "Error") == 0 && !x->error_depth && !o->code[0]) {
        x->error_depth = x->depth;
        return;
    }
    /* Code and Message of the first <Error>, wherever it sits: the root in
     * S3, <ErrorResponse><Error> in STS and SQS (query), and
     * <ErrorResponse><Errors><Error> in what moto's SQS answers. */
    bool in_error = x->error_depth && x->depth == x->error_depth + 1;
    if (in_error && strcmp(name, "Code") == 0 && !o->code[0]) {
        x->field = o->code;
        x->cap = sizeof o->code;
    } else if (in_error && strcmp(name, "Message") == 0 && !o->message[0]) {
        x->field = o->message;
        x->cap = sizeof o->message;
    } else if ((strcmp(name, "RequestId") == 0 || strcmp(name, "RequestID") == 0) &&
               !o->request_id[0]) {
        x->field = o->request_id;
        x->cap = sizeof o->request_id;
    }
    x->len = 0;
}

static void XMLCALL xe_end(void *ud, const XML_Char *name)
{
    xml_err *x = ud;
    x->field = NULL;
    if (x->depth == x->error_depth)
        x->error_depth = -1; /* the first <Error> is closed: take no other */
    x->depth--;
}

static void XMLCALL xe_text(void *ud, const XML_Char *s, int len)
{
    xml_err *x = ud;
    if (x->field)
        field_append(x, s, (size_t)len);
}

static void parse_xml(const void *body, size_t len, aws_error_info *out)
{
    XML_Parser p = XML_ParserCreate("UTF-8");
    if (!p)
        return;
    xml_err x = {.out = out};
    XML_SetUserData(p, &x);
    XML_SetElementHandler(p, xe_start, xe_end);
    XML_SetCharacterDataHandler(p, xe_text);
    /* A truncated or non-XML body keeps whatever was read before the error. */
    XML_Parse(p, body, (int)len, 1);
    XML_ParserFree(p);
}

/* "com.amazonaws.sqs#QueueDoesNotExist" or "Name:http://internal..." to the
 * bare name. */
static void set_type_code(aws_error_info *out, const char *type)
{
    const char *hash = strrchr(type, '#');
    const char *name = hash ? hash + 1 : type;
    snprintf(out->code, sizeof out->code, "%.*s", (int)strcspn(name, ":"), name);
}

static const char *json_string(const cJSON *j, const char *const *names)
{
    for (; *names; names++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, *names);
        if (cJSON_IsString(v) && v->valuestring[0])
            return v->valuestring;
    }
    return NULL;
}

static void parse_json(const void *body, size_t len, aws_error_info *out)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j)
        return;
    static const char *const type_keys[] = {"__type", "code", "Code", NULL};
    static const char *const msg_keys[] = {"message", "Message", "errorMessage", NULL};
    const char *type = json_string(j, type_keys);
    const char *msg = json_string(j, msg_keys);
    if (type)
        set_type_code(out, type);
    if (msg)
        snprintf(out->message, sizeof out->message, "%s", msg);
    cJSON_Delete(j);
}

/* The message goes into a one-line error: no control characters. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

void aws_error_parse(const void *body, size_t len, const aws_kvlist *headers,
                     aws_error_info *out)
{
    memset(out, 0, sizeof *out);
    const char *b = body;
    size_t skip = 0;
    while (skip < len && (b[skip] == ' ' || b[skip] == '\t' || b[skip] == '\r' || b[skip] == '\n'))
        skip++;
    if (skip < len && b[skip] == '{')
        parse_json(b + skip, len - skip, out);
    else if (skip < len && b[skip] == '<')
        parse_xml(b + skip, len - skip, out);
    /* JSON services name the error in headers too (an empty body is
     * allowed); the SQS JSON protocol adds its legacy query code. */
    const char *etype = aws_kvlist_get(headers, "x-amzn-errortype");
    const char *qerr = aws_kvlist_get(headers, "x-amzn-query-error");
    if (!out->code[0] && etype && etype[0])
        set_type_code(out, etype);
    if (!out->code[0] && qerr && qerr[0])
        snprintf(out->code, sizeof out->code, "%.*s", (int)strcspn(qerr, ";"), qerr);
    if (!out->request_id[0]) {
        const char *rid = aws_kvlist_get(headers, "x-amz-request-id");
        if (!rid)
            rid = aws_kvlist_get(headers, "x-amzn-requestid");
        if (rid)
            snprintf(out->request_id, sizeof out->request_id, "%s", rid);
    }
    one_line(out->code);
    one_line(out->message);
    one_line(out->request_id);
}
