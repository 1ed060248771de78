/*
 * collectors._wire: reads OTLP trace export protobuf and writes JSON and PostgreSQL's binary
 * COPY format, so that neither costs a Python object per field. It decides nothing about
 * what the data means (which attribute names a stage or holds the correlation ID, whether a
 * span is valid, what a row holds): collectors.traces does, in Python.
 *
 * read_traces(body: bytes, keys: tuple[str, ...], prefixes: tuple[str, ...], layout: str)
 *     -> list[tuple[bytes, list[tuple]]] | None
 *
 * Each resource as (its attributes as JSON, its spans), each span as (selected, trace_id,
 * span_id, parent_span_id, kind, status_code, start_ns, end_ns, status_message, fields,
 * name, attributes, events). `selected` is a JSON object of the attributes whose key is in
 * `keys` or starts with one of `prefixes` (those Python reads), `attributes` all of them as
 * binary jsonb, `events` a JSON array of {name, time_unix_nano, attributes} or None;
 * status_message is None when empty. A span whose name and status message hold no NUL
 * comes with `fields`, its columns as binary COPY fields in the order `layout` names them
 * (see LAYOUT), and name and attributes None; any other span with fields None, for Python
 * to make its row. The JSON is what orjson writes of the protobuf runtime's values, up to
 * the spelling of numbers: NUL characters dropped, non-finite numbers as null.
 *
 * It returns None, raising nothing, for any body outside the common shape it reads:
 * malformed wire data, invalid UTF-8, a known field of the wrong wire type, groups, bytes
 * attribute values, attribute keys holding NUL, a singular message sent twice (which
 * protobuf would merge), nesting deeper than MAX_DEPTH. The caller then parses the body
 * with the protobuf runtime, which gives the exact verdict. Every read is bounds-checked
 * against its enclosing message.
 *
 * copy_rows(rows: list[tuple], kinds: str, columns: int) -> bytes
 *
 * The tuples of PostgreSQL's binary COPY format (without header and trailer) of `columns`
 * columns, for rows whose values are, by `kinds`, one letter each: t text (str), b bytes
 * (bytea, or any type whose binary form the caller holds), h int2, q int8, ? bool; None is
 * NULL. A last kind `*` takes bytes of COPY fields already encoded (read_traces' fields)
 * that complete the row. A value of another type raises TypeError, one out of range
 * OverflowError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 32
#define PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

/* Result of the readers below: OK, or FALLBACK (let the protobuf runtime decide), or
 * FAILED (a Python exception is set, e.g. MemoryError). */
enum { OK = 0, FALLBACK = 1, FAILED = 2 };

/* A growing byte buffer (PyMem), for JSON text and COPY rows. */
typedef struct {
    char *data;
    Py_ssize_t length, capacity;
} Buffer;

static int buffer_reserve(Buffer *b, Py_ssize_t more) {
    if (b->length + more <= b->capacity) return 0;
    Py_ssize_t capacity = b->capacity ? b->capacity : 65536;
    while (capacity < b->length + more) capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static void put_be(Buffer *b, uint64_t value, int bytes) {
    uint64_t big = __builtin_bswap64(value) >> (64 - 8 * bytes); /* its last `bytes` bytes */
    memcpy(b->data + b->length, &big, bytes);
    b->length += bytes;
}

/* COPY fields: int32 length (-1 for NULL), then the value's binary form. */
static int put_null(Buffer *b) {
    if (buffer_reserve(b, 4) < 0) return -1;
    put_be(b, 0xFFFFFFFFu, 4);
    return 0;
}

/* The start of a COPY tuple: its number of columns. */
static int put_columns(Buffer *b, int columns) {
    if (buffer_reserve(b, 2) < 0) return -1;
    put_be(b, (uint64_t)columns, 2);
    return 0;
}

static int put_data(Buffer *b, const void *data, Py_ssize_t size) {
    if (size > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value too long for a COPY field");
        return -1;
    }
    if (buffer_reserve(b, 4 + size) < 0) return -1;
    put_be(b, (uint64_t)size, 4);
    if (size) memcpy(b->data + b->length, data, size);
    b->length += size;
    return 0;
}

static int put_reader(Buffer *b, const Reader *r) {
    return put_data(b, r->p, r->p ? r->end - r->p : 0);
}

static int put_int(Buffer *b, int64_t value, int bytes) {
    if (buffer_reserve(b, 4 + bytes) < 0) return -1;
    put_be(b, (uint64_t)bytes, 4);
    put_be(b, (uint64_t)value, bytes);
    return 0;
}

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return FALLBACK;
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return OK;
        }
    }
    return FALLBACK;
}

/* A tag is a uint32 varint of at most five bytes: the runtime refuses a longer one even
 * when its value fits (a zero-padded 0x8a 0x80 0x80 0x80 0x80 0x00). */
static int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    const uint8_t *start = r->p;
    if (read_varint(r, &tag) != OK || r->p - start > 5) return FALLBACK;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    if (*field == 0 || (tag >> 3) > 0x1FFFFFFF) return FALLBACK;
    return OK;
}

static int read_fixed64(Reader *r, uint64_t *out) {
    if (r->end - r->p < 8) return FALLBACK;
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) value = (value << 8) | r->p[i];
    r->p += 8;
    *out = value;
    return OK;
}

static int read_delimited(Reader *r, Reader *inner) {
    uint64_t length;
    if (read_varint(r, &length) != OK) return FALLBACK;
    if (length > (uint64_t)(r->end - r->p)) return FALLBACK;
    inner->p = r->p;
    inner->end = r->p + length;
    r->p += length;
    return OK;
}

static int skip_field(Reader *r, int wire_type) {
    uint64_t ignored;
    Reader inner;
    switch (wire_type) {
    case 0: return read_varint(r, &ignored);
    case 1: return read_fixed64(r, &ignored);
    case 2: return read_delimited(r, &inner);
    case 5:
        if (r->end - r->p < 4) return FALLBACK;
        r->p += 4;
        return OK;
    default: return FALLBACK; /* groups (3, 4) and invalid wire types */
    }
}

/* The length of the well-formed UTF-8 sequence of a non-ASCII character at p, as the
 * protobuf runtime requires it (no overlong forms, surrogates or code points past
 * U+10FFFF), or 0. */
static int utf8_sequence(const uint8_t *p, const uint8_t *end) {
    uint8_t c = *p;
    int extra;
    uint32_t code;
    if (c >= 0xC2 && c <= 0xDF) extra = 1, code = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) extra = 2, code = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) extra = 3, code = c & 0x07;
    else return 0;
    if (end - p <= extra) return 0;
    for (int i = 1; i <= extra; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        code = (code << 6) | (p[i] & 0x3F);
    }
    if ((extra == 2 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) ||
        (extra == 3 && (code < 0x10000 || code > 0x10FFFF))) {
        return 0;
    }
    return extra + 1;
}

static int valid_utf8(const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        uint64_t eight;
        if (end - p >= 8 && (memcpy(&eight, p, 8), !(eight & 0x8080808080808080ULL))) {
            p += 8; /* eight ASCII characters */
        } else if (*p < 0x80) {
            p++;
        } else {
            int length = utf8_sequence(p, end);
            if (length == 0) return 0;
            p += length;
        }
    }
    return 1;
}

/* What a reader skips of a message it reads, and how. The protobuf runtime rejects a body
 * whose string fields are not UTF-8 even where Q2C keeps nothing, so those are checked;
 * collectors.otlp refuses a known field sent with the wrong wire type, so every known
 * field is listed with its own. Fields not listed (from a newer OTLP) are skipped. */
typedef enum {
    CHECK_STR = 1,   /* string: UTF-8 */
    CHECK_BYTES,     /* bytes: length-delimited */
    CHECK_KEY_VALUE, /* KeyValue: read as attributes are */
    CHECK_MESSAGE,   /* another message, by its own table */
    CHECK_VARINT,    /* integer, bool or enum */
    CHECK_FIXED32,
} CheckKind;

typedef struct FieldCheck {
    uint32_t field; /* 0 ends a table */
    CheckKind kind;
    const struct FieldCheck *message; /* the nested message's table, for CHECK_MESSAGE */
} FieldCheck;

static const FieldCheck ENTITY_REF[] = {
    {1, CHECK_STR, NULL}, {2, CHECK_STR, NULL}, {3, CHECK_STR, NULL}, {4, CHECK_STR, NULL}, {0}};
static const FieldCheck SCOPE[] = {{1, CHECK_STR, NULL},
                                   {2, CHECK_STR, NULL},
                                   {3, CHECK_KEY_VALUE, NULL},
                                   {4, CHECK_VARINT, NULL},
                                   {0}};
static const FieldCheck LINK[] = {{1, CHECK_BYTES, NULL},     {2, CHECK_BYTES, NULL},
                                  {3, CHECK_STR, NULL},       {4, CHECK_KEY_VALUE, NULL},
                                  {5, CHECK_VARINT, NULL},    {6, CHECK_FIXED32, NULL},
                                  {0}};
static const FieldCheck RESOURCE_UNKEPT[] = {
    {2, CHECK_VARINT, NULL}, {3, CHECK_MESSAGE, ENTITY_REF}, {0}};
static const FieldCheck RESOURCE_SPANS_UNKEPT[] = {{3, CHECK_STR, NULL}, {0}};
static const FieldCheck SCOPE_SPANS_UNKEPT[] = {
    {1, CHECK_MESSAGE, SCOPE}, {3, CHECK_STR, NULL}, {0}};
static const FieldCheck SPAN_UNKEPT[] = {{3, CHECK_STR, NULL},     {10, CHECK_VARINT, NULL},
                                         {12, CHECK_VARINT, NULL}, {13, CHECK_MESSAGE, LINK},
                                         {14, CHECK_VARINT, NULL}, {16, CHECK_FIXED32, NULL},
                                         {0}};
static const FieldCheck EVENT_UNKEPT[] = {{4, CHECK_VARINT, NULL}, {0}};

/* KeyValue { string key = 1; AnyValue value = 2; }: its key (the last one sent) and value
 * (sent at most once). */
static int split_key_value(Reader *r, Reader *key, Reader *value, int *has_value) {
    static const uint8_t nothing[1] = {0};
    key->p = key->end = nothing;
    *has_value = 0;
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field == 1 && wire_type == 2) {
            /* every occurrence must be UTF-8, as the runtime checks each before keeping one;
             * a key holding NUL is stored without it, so it may name a selected key: the
             * runtime's path reads such a (hostile) body */
            if (read_delimited(r, key) != OK || !valid_utf8(key->p, key->end) ||
                memchr(key->p, 0, key->end - key->p) != NULL) {
                return FALLBACK;
            }
        } else if (field == 2 && wire_type == 2) {
            if ((*has_value)++ || read_delimited(r, value) != OK) return FALLBACK;
        } else if (field <= 3) { /* mistyped, or key_strindex (profiles' dictionary keys) */
            return FALLBACK;
        } else if ((status = skip_field(r, wire_type)) != OK) {
            return status;
        }
    }
    return OK;
}

/* ---- attributes as JSON ---------------------------------------------------------------
 * Attributes go to the database as jsonb, and Python reads a few of them (the keys the
 * attribute map names, replay headers by prefix): both are written as JSON, which is what
 * orjson writes of the runtime's values (NUL characters dropped, non-finite numbers as
 * null), up to spelling that jsonb does not keep (key order, number format). */

typedef struct {
    Py_ssize_t count, prefix_count;
    const char **keys, **prefixes;
    Py_ssize_t *key_lengths, *prefix_lengths;
} Selection;

#define BY_PREFIX (-1)
#define NOT_SELECTED (-2)

/* Whether `key` is selected: its index in the keys, BY_PREFIX for a key that starts with
 * one of the prefixes, else NOT_SELECTED. */
static Py_ssize_t selected_index(const Selection *sel, const Reader *key) {
    Py_ssize_t length = key->end - key->p;
    for (Py_ssize_t i = 0; i < sel->count; i++) {
        if (sel->key_lengths[i] == length && memcmp(sel->keys[i], key->p, length) == 0) return i;
    }
    for (Py_ssize_t i = 0; i < sel->prefix_count; i++) {
        Py_ssize_t n = sel->prefix_lengths[i];
        if (n <= length && memcmp(sel->prefixes[i], key->p, n) == 0) return BY_PREFIX;
    }
    return NOT_SELECTED;
}

static int json_raw(Buffer *b, const char *text, Py_ssize_t length) {
    if (buffer_reserve(b, length) < 0) return FAILED;
    memcpy(b->data + b->length, text, length);
    b->length += length;
    return OK;
}

/* Bytes a JSON string cannot hold as they are: control characters, '"', '\\', and the
 * first bytes of multi-byte UTF-8 sequences (checked, then copied). */
static const uint8_t JSON_SPECIAL[256] = {
    [0 ... 0x1F] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xFF] = 1};

/* Characters JSON escapes by a letter (other control characters as \\u00XX). */
static const char ESCAPED[128] = {['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\t'] = 't',
                                   ['\n'] = 'n', ['\f'] = 'f',  ['\r'] = 'r'};

/* A JSON string of UTF-8 text; invalid UTF-8 falls back, NUL characters are dropped. */
static int json_string(Buffer *b, const Reader *text) {
    static const char hex[] = "0123456789abcdef";
    if (buffer_reserve(b, 2 + 6 * (text->end - text->p)) < 0) return FAILED;
    char *out = b->data + b->length;
    const uint8_t *p = text->p, *end = text->end;
    *out++ = '"';
    while (p < end) {
        const uint8_t *plain = p;
        while (p < end && !JSON_SPECIAL[*p]) p++;
        memcpy(out, plain, p - plain);
        out += p - plain;
        if (p == end) break;
        uint8_t c = *p;
        if (c >= 0x80) {
            int length = utf8_sequence(p, end);
            if (length == 0) return FALLBACK;
            memcpy(out, p, length);
            out += length, p += length;
            continue;
        }
        p++;
        if (ESCAPED[c]) {
            *out++ = '\\';
            *out++ = ESCAPED[c];
        } else if (c != 0) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[c >> 4];
            out[5] = hex[c & 15];
            out += 6;
        }
    }
    *out++ = '"';
    b->length = out - b->data;
    return OK;
}

typedef int (*ItemReader)(Reader *item, void *context);
static int each_item(Reader *r, uint32_t wanted, const FieldCheck *others, ItemReader read,
                     void *context);
static int json_object(Buffer *b, Reader *r, uint32_t entries, const FieldCheck *others,
                       int depth);
static int json_array_item(Reader *item, void *context);
static const FieldCheck NO_OTHERS[] = {{0}};

/* Where a JSON array or object is being written, for each_item's callbacks. */
typedef struct {
    Buffer *b;
    int first, depth;
} JsonList;

/* An AnyValue as JSON: what orjson writes of the runtime's value (see the top). */
static int json_any_value(Buffer *b, Reader *r, int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    Reader value = {NULL, NULL};
    uint32_t value_field = 0;
    uint64_t number = 0;
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field == 8) return FALLBACK; /* string_value_strindex: another oneof member */
        if (field < 1 || field > 8) {
            if ((status = skip_field(r, wire_type)) != OK) return status;
            continue;
        }
        if (value_field) return FALLBACK; /* several members of the oneof */
        value_field = field;
        int expected = field == 4 ? 1 : (field == 2 || field == 3) ? 0 : 2;
        if (wire_type != expected || field == 7) return FALLBACK; /* bytes_value, or odd */
        if (wire_type == 2) status = read_delimited(r, &value);
        else if (wire_type == 1) status = read_fixed64(r, &number);
        else status = read_varint(r, &number);
        if (status != OK) return FALLBACK;
    }
    char digits[32];
    switch (value_field) {
    case 0: return json_raw(b, "null", 4);
    case 1: return json_string(b, &value);
    case 2: return number ? json_raw(b, "true", 4) : json_raw(b, "false", 5);
    case 3: return json_raw(b, digits, snprintf(digits, sizeof digits, "%lld", (long long)number));
    case 4: {
        double d;
        memcpy(&d, &number, sizeof d);
        if (!isfinite(d)) return json_raw(b, "null", 4);
        char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) return FAILED;
        int status = json_raw(b, text, (Py_ssize_t)strlen(text));
        PyMem_Free(text);
        return status;
    }
    case 5: { /* ArrayValue { repeated AnyValue values = 1 } */
        JsonList list = {b, 1, depth + 1};
        int status = json_raw(b, "[", 1);
        if (status == OK) status = each_item(&value, 1, NO_OTHERS, json_array_item, &list);
        return status == OK ? json_raw(b, "]", 1) : status;
    }
    default: /* 6: KeyValueList { repeated KeyValue values = 1 } */
        return json_object(b, &value, 1, NO_OTHERS, depth + 1);
    }
}

/* "key": value for one KeyValue; its parts in *key, *value (unread) and *has_value. */
static int json_key_value(Buffer *b, Reader *r, Reader *key, Reader *value, int *has_value,
                          int depth) {
    int status;
    value->p = value->end = NULL;
    if ((status = split_key_value(r, key, value, has_value)) != OK) return status;
    if ((status = json_string(b, key)) != OK || (status = json_raw(b, ":", 1)) != OK) {
        return status;
    }
    Reader unread = *value;
    return *has_value ? json_any_value(b, &unread, depth + 1) : json_raw(b, "null", 4);
}

/* Checks (or, if `checks` does not list it, skips) one field whose tag was just read. */
static int check_field(Reader *r, const FieldCheck *checks, uint32_t field, int wire_type,
                       int depth) {
    while (checks->field && checks->field != field) checks++;
    if (!checks->field) return skip_field(r, wire_type);
    if (checks->kind == CHECK_VARINT || checks->kind == CHECK_FIXED32) {
        int expected = checks->kind == CHECK_VARINT ? 0 : 5;
        return wire_type == expected ? skip_field(r, wire_type) : FALLBACK;
    }
    Reader inner;
    if (depth > MAX_DEPTH || wire_type != 2 || read_delimited(r, &inner) != OK) return FALLBACK;
    if (checks->kind == CHECK_BYTES) return OK;
    if (checks->kind == CHECK_STR) return valid_utf8(inner.p, inner.end) ? OK : FALLBACK;
    if (checks->kind == CHECK_KEY_VALUE) { /* written to be checked, then forgotten */
        Buffer scratch = {0};
        Reader key, value;
        int has_value, status = json_key_value(&scratch, &inner, &key, &value, &has_value, depth);
        PyMem_Free(scratch.data);
        return status;
    }
    int status = OK;
    while (inner.p < inner.end && status == OK) {
        if ((status = read_tag(&inner, &field, &wire_type)) != OK) break;
        status = check_field(&inner, checks->message, field, wire_type, depth + 1);
    }
    return status;
}

/* Calls `read` on each occurrence of the message field `wanted` in the message at `r`,
 * checking its other fields by `others`. */
static int each_item(Reader *r, uint32_t wanted, const FieldCheck *others, ItemReader read,
                     void *context) {
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        Reader item;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field != wanted) status = check_field(r, others, field, wire_type, 0);
        else if (wire_type != 2 || read_delimited(r, &item) != OK) return FALLBACK;
        else status = read(&item, context);
        if (status != OK) return status;
    }
    return OK;
}

static int json_separator(JsonList *list) {
    if (list->first) {
        list->first = 0;
        return OK;
    }
    return json_raw(list->b, ",", 1);
}

static int json_array_item(Reader *item, void *context) {
    JsonList *list = context;
    int status = json_separator(list);
    return status == OK ? json_any_value(list->b, item, list->depth) : status;
}

static int json_object_entry(Reader *entry, void *context) {
    JsonList *list = context;
    Reader key, value;
    int has_value, status = json_separator(list);
    return status == OK ? json_key_value(list->b, entry, &key, &value, &has_value, list->depth)
                        : status;
}

/* A message's KeyValue entries (field `entries`) as a JSON object, its other fields
 * checked by `others`. */
static int json_object(Buffer *b, Reader *r, uint32_t entries, const FieldCheck *others,
                       int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    JsonList list = {b, 1, depth};
    int status = json_raw(b, "{", 1);
    if (status == OK) status = each_item(r, entries, others, json_object_entry, &list);
    return status == OK ? json_raw(b, "}", 1) : status;
}

/* ---- spans ----------------------------------------------------------------------------
 * A span is read as it lies in the body (RawSpan: where each field is), its attributes,
 * selected attributes and events written as JSON on the way; then it is made into its
 * tuple, with its COPY fields when they can be written as they lie. */

typedef struct {
    Reader trace_id, span_id, parent, name, status_message; /* p == NULL: not sent */
    uint64_t start, end;
    int32_t kind, code;
    int has_events;
} RawSpan;

/* A span's JSON as it is written: attributes (as jsonb), selected ones, events. */
typedef struct {
    Buffer attributes, selected, events;
} SpanJson;

/* A string field as it lies in the body, checked for UTF-8. */
static int read_text(Reader *r, Reader *text) {
    if (read_delimited(r, text) != OK || !valid_utf8(text->p, text->end)) return FALLBACK;
    return OK;
}

/* Status { string message = 2; StatusCode code = 3; } */
static int read_status(Reader *r, Reader *message, int32_t *code) {
    int status = OK;
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        uint64_t number;
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        if (field == 2 && wire_type == 2) {
            status = read_text(r, message);
        } else if (field == 3 && wire_type == 0) {
            if ((status = read_varint(r, &number)) == OK) *code = (int32_t)number;
        } else if (field == 2 || field == 3) {
            status = FALLBACK;
        } else {
            status = skip_field(r, wire_type);
        }
    }
    return status;
}

/* Span.Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; }
 * as {"name": …, "time_unix_nano": …, "attributes": {…}}. */
static int json_event(Buffer *b, Reader *r) {
    Reader name = {NULL, NULL}, event = *r;
    uint64_t time_ns = 0;
    while (r->p < r->end) { /* the name and time first, wherever they lie */
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field == 1 && wire_type == 1) status = read_fixed64(r, &time_ns);
        else if (field == 2 && wire_type == 2) status = read_text(r, &name);
        else if (field <= 3 && !(field == 3 && wire_type == 2)) status = FALLBACK;
        else status = skip_field(r, wire_type);
        if (status != OK) return status;
    }
    char digits[32];
    int status = json_raw(b, "{\"name\":", 8);
    if (status == OK) status = name.p ? json_string(b, &name) : json_raw(b, "\"\"", 2);
    if (status == OK) status = json_raw(b, ",\"time_unix_nano\":", 18);
    if (status == OK) {
        status = json_raw(b, digits, snprintf(digits, sizeof digits, "%llu",
                                              (unsigned long long)time_ns));
    }
    if (status == OK) status = json_raw(b, ",\"attributes\":", 14);
    if (status == OK) status = json_object(b, &event, 3, EVENT_UNKEPT, 0);
    return status == OK ? json_raw(b, "}", 1) : status;
}

/* The wire type of each Span field read_span takes by itself (-1: checked by SPAN_UNKEPT). */
static const int8_t SPAN_WIRE[16] = {-1, 2, 2, -1, 2, 2, 0, 1, 1, 2, -1, 2, -1, -1, -1, 2};

/* Reads a Span into `s`, its JSON into `j` (attributes as binary jsonb). */
static int read_span(Reader *r, RawSpan *s, const Selection *sel, SpanJson *j) {
    *s = (RawSpan){0};
    int status_seen = 0;
    uint64_t number;
    j->attributes.length = j->selected.length = j->events.length = 0;
    int status = json_raw(&j->attributes, "\x01{", 2); /* jsonb version 1, then JSON */
    if (status == OK) status = json_raw(&j->selected, "{", 1);
    if (status == OK) status = json_raw(&j->events, "[", 1);
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner = {NULL, NULL};
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        if (field < 16 && SPAN_WIRE[field] >= 0 && wire_type != SPAN_WIRE[field]) {
            status = FALLBACK;
            break;
        }
        if ((field == 9 || field == 11 || field == 15) && read_delimited(r, &inner) != OK) {
            status = FALLBACK;
            break;
        }
        switch (field) {
        case 1: status = read_delimited(r, &s->trace_id); break;
        case 2: status = read_delimited(r, &s->span_id); break;
        case 4: status = read_delimited(r, &s->parent); break;
        case 5: status = read_text(r, &s->name); break;
        case 6:
            if ((status = read_varint(r, &number)) == OK) s->kind = (int32_t)number;
            break;
        case 7: status = read_fixed64(r, &s->start); break;
        case 8: status = read_fixed64(r, &s->end); break;
        case 9: { /* attributes: all into `attributes`, the selected ones into `selected` too */
            Reader key, value;
            int has_value;
            if (j->attributes.length > 2 && (status = json_raw(&j->attributes, ",", 1)) != OK) {
                break;
            }
            Py_ssize_t mark = j->attributes.length;
            status = json_key_value(&j->attributes, &inner, &key, &value, &has_value, 0);
            if (status != OK || selected_index(sel, &key) == NOT_SELECTED) break;
            if (j->selected.length > 1 && (status = json_raw(&j->selected, ",", 1)) != OK) break;
            status = json_raw(&j->selected, j->attributes.data + mark,
                              j->attributes.length - mark);
            break;
        }
        case 11:
            if (s->has_events++ && (status = json_raw(&j->events, ",", 1)) != OK) break;
            status = json_event(&j->events, &inner);
            break;
        case 15:
            status = status_seen++ ? FALLBACK : read_status(&inner, &s->status_message, &s->code);
            break;
        default: /* trace_state, flags, links, dropped counts: not stored */
            status = check_field(r, SPAN_UNKEPT, field, wire_type, 0);
        }
    }
    if (status == OK) status = json_raw(&j->attributes, "}", 1);
    if (status == OK) status = json_raw(&j->selected, "}", 1);
    return status == OK ? json_raw(&j->events, "]", 1) : status;
}

static int has_nul(const Reader *r) {
    return r->p != NULL && memchr(r->p, 0, r->end - r->p) != NULL;
}

/* LAYOUT: the letters of read_traces' `layout`, each a span column as a binary COPY field.
 * T trace_id, I span_id, P parent_span_id (NULL when empty): bytea; S start, E end:
 * timestamptz; N name, M status message (NULL when empty): text; K kind, C status code:
 * int2; A attributes, V events (NULL when none): jsonb. */
static const char LAYOUT[] = "TIPSENMKCAV";

static int put_optional(Buffer *b, const Reader *r) {
    return r->p != NULL && r->p != r->end ? put_reader(b, r) : put_null(b);
}

static int put_jsonb(Buffer *b, const Buffer *json) { /* binary jsonb: version 1, then JSON */
    if (buffer_reserve(b, 5 + json->length) < 0) return -1;
    put_be(b, (uint64_t)json->length + 1, 4);
    b->data[b->length++] = 1;
    memcpy(b->data + b->length, json->data, json->length);
    b->length += json->length;
    return 0;
}

static int put_fields(Buffer *b, const RawSpan *s, const SpanJson *j, const char *layout) {
    int status = 0;
    for (const char *letter = layout; *letter && status == 0; letter++) {
        switch (*letter) {
        case 'T': status = put_reader(b, &s->trace_id); break;
        case 'I': status = put_reader(b, &s->span_id); break;
        case 'P': status = put_optional(b, &s->parent); break;
        case 'S': status = put_int(b, (int64_t)(s->start / 1000) - PG_EPOCH_US, 8); break;
        case 'E': status = put_int(b, (int64_t)(s->end / 1000) - PG_EPOCH_US, 8); break;
        case 'N': status = put_reader(b, &s->name); break;
        case 'M': status = put_optional(b, &s->status_message); break;
        case 'K': status = put_int(b, (int16_t)s->kind, 2); break;
        case 'C': status = put_int(b, (int16_t)s->code, 2); break;
        case 'A': status = put_data(b, j->attributes.data, j->attributes.length); break;
        default: status = s->has_events ? put_jsonb(b, &j->events) : put_null(b); /* V */
        }
    }
    return status;
}

static PyObject *bytes_of(const Reader *r) {
    return PyBytes_FromStringAndSize((const char *)r->p, r->p ? r->end - r->p : 0);
}

static PyObject *bytes_of_buffer(const Buffer *b) {
    return PyBytes_FromStringAndSize(b->data ? b->data : "", b->length);
}

static PyObject *str_or_none(const Reader *r) {
    if (r->p == NULL || r->p == r->end) return Py_NewRef(Py_None);
    return PyUnicode_DecodeUTF8((const char *)r->p, r->end - r->p, NULL);
}

/* What one body's spans share while they are read. */
typedef struct {
    const Selection *sel;
    const char *layout;
    RawSpan raw;
    SpanJson json;
    Buffer fields;
    PyObject *resources, *spans; /* the list read_traces returns; the resource's spans */
} Reading;

/* Reads a Span and appends its tuple (see the top of this file) to the resource's spans. */
static int read_one_span(Reader *r, void *context) {
    Reading *g = context;
    const RawSpan *s = &g->raw;
    int status = read_span(r, &g->raw, g->sel, &g->json);
    if (status != OK) return status;
    int as_fields = !has_nul(&s->name) && !has_nul(&s->status_message);
    g->fields.length = 0;
    if (as_fields && put_fields(&g->fields, s, &g->json, g->layout) < 0) return FAILED;
    PyObject *span = PyTuple_New(13);
    if (span == NULL) return FAILED;
    PyObject *items[] = {
        bytes_of_buffer(&g->json.selected), bytes_of(&s->trace_id), bytes_of(&s->span_id),
        bytes_of(&s->parent), PyLong_FromLong(s->kind), PyLong_FromLong(s->code),
        PyLong_FromUnsignedLongLong(s->start), PyLong_FromUnsignedLongLong(s->end),
        str_or_none(&s->status_message),
        as_fields ? bytes_of_buffer(&g->fields) : Py_NewRef(Py_None),
        as_fields ? Py_NewRef(Py_None) : str_or_none(&s->name),
        as_fields ? Py_NewRef(Py_None) : bytes_of_buffer(&g->json.attributes),
        s->has_events ? bytes_of_buffer(&g->json.events) : Py_NewRef(Py_None)};
    for (int i = 0; i < 13; i++) {
        if (items[i] == NULL) status = FAILED;
        PyTuple_SET_ITEM(span, i, items[i]);
    }
    if (status == OK && PyList_Append(g->spans, span) < 0) status = FAILED;
    Py_DECREF(span);
    return status;
}

/* ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; } */
static int read_scope_spans(Reader *r, void *context) {
    return each_item(r, 2, SCOPE_SPANS_UNKEPT, read_one_span, context);
}

/* ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 * Resource { repeated KeyValue attributes = 1; } */
static int read_resource_spans(Reader *r, void *context) {
    Reading *g = context;
    PyObject *spans = g->spans = PyList_New(0), *attrs = NULL;
    Buffer json = {0};
    int resource_seen = 0, status = spans ? OK : FAILED;
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner;
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        if ((field == 1 || field == 2) && wire_type != 2) {
            status = FALLBACK;
        } else if (field == 1) {
            if (resource_seen++ || read_delimited(r, &inner) != OK) status = FALLBACK;
            else status = json_object(&json, &inner, 1, RESOURCE_UNKEPT, 0);
        } else if (field == 2) {
            if ((status = read_delimited(r, &inner)) == OK) status = read_scope_spans(&inner, g);
        } else {
            status = check_field(r, RESOURCE_SPANS_UNKEPT, field, wire_type, 0);
        }
    }
    if (status == OK) {
        attrs = json.length ? bytes_of_buffer(&json) : PyBytes_FromString("{}");
        PyObject *item = attrs ? PyTuple_Pack(2, attrs, spans) : NULL;
        if (item == NULL || PyList_Append(g->resources, item) < 0) status = FAILED;
        Py_XDECREF(item);
    }
    PyMem_Free(json.data);
    Py_XDECREF(attrs);
    Py_XDECREF(spans);
    return status;
}

/* The UTF-8 of each str in `strings` (which must outlive the use of `texts`). */
static int utf8_of(PyObject *strings, const char ***texts, Py_ssize_t **lengths, Py_ssize_t *n) {
    *n = PyTuple_GET_SIZE(strings);
    *texts = PyMem_Calloc(*n + 1, sizeof **texts);
    *lengths = PyMem_Calloc(*n + 1, sizeof **lengths);
    if (*texts == NULL || *lengths == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *item = PyTuple_GET_ITEM(strings, i);
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "attribute keys must be str");
            return -1;
        }
        if (((*texts)[i] = PyUnicode_AsUTF8AndSize(item, &(*lengths)[i])) == NULL) return -1;
    }
    return 0;
}

static PyObject *read_traces(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer view;
    PyObject *keys, *prefixes;
    const char *layout;
    if (!PyArg_ParseTuple(args, "y*O!O!s", &view, &PyTuple_Type, &keys, &PyTuple_Type,
                          &prefixes, &layout)) {
        return NULL;
    }
    Selection sel = {0};
    Reading g = {.sel = &sel, .layout = layout};
    int status = OK;
    if (strspn(layout, LAYOUT) != strlen(layout)) {
        PyErr_Format(PyExc_ValueError, "layout letters are %s", LAYOUT);
        status = FAILED;
    } else if (utf8_of(keys, &sel.keys, &sel.key_lengths, &sel.count) < 0 ||
               utf8_of(prefixes, &sel.prefixes, &sel.prefix_lengths, &sel.prefix_count) < 0 ||
               (g.resources = PyList_New(0)) == NULL) {
        status = FAILED;
    }
    Reader r = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    /* ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; } */
    if (status == OK) status = each_item(&r, 1, NO_OTHERS, read_resource_spans, &g);
    PyBuffer_Release(&view);
    PyMem_Free(g.json.attributes.data);
    PyMem_Free(g.json.selected.data);
    PyMem_Free(g.json.events.data);
    PyMem_Free(g.fields.data);
    PyMem_Free(sel.keys);
    PyMem_Free(sel.key_lengths);
    PyMem_Free(sel.prefixes);
    PyMem_Free(sel.prefix_lengths);
    if (status == OK) return g.resources;
    Py_XDECREF(g.resources);
    if (status == FAILED) return NULL;
    Py_RETURN_NONE;
}

/* ---- binary COPY rows ---------------------------------------------------------------- */

/* One field: int32 length (-1 for NULL) then the value's binary form. */
static int put_field(Buffer *b, PyObject *value, char kind) {
    const char *data;
    Py_ssize_t size;
    if (value == Py_None) return put_null(b);
    switch (kind) {
    case 't':
        if (!PyUnicode_Check(value)) goto wrong_type;
        if ((data = PyUnicode_AsUTF8AndSize(value, &size)) == NULL) return -1;
        return put_data(b, data, size);
    case 'b':
        if (!PyBytes_Check(value)) goto wrong_type;
        return put_data(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    case 'h':
    case 'q': {
        if (!PyLong_Check(value) || PyBool_Check(value)) goto wrong_type;
        long long number = PyLong_AsLongLong(value);
        if (number == -1 && PyErr_Occurred()) return -1;
        if (kind == 'h' && (number < -32768 || number > 32767)) {
            PyErr_SetString(PyExc_OverflowError, "value out of int2 range");
            return -1;
        }
        return put_int(b, number, kind == 'h' ? 2 : 8);
    }
    case '?':
        if (!PyBool_Check(value)) goto wrong_type;
        return put_data(b, value == Py_True ? "\x01" : "\x00", 1);
    case '*': /* fields encoded already: appended as they are */
        if (!PyBytes_Check(value)) goto wrong_type;
        if (buffer_reserve(b, PyBytes_GET_SIZE(value)) < 0) return -1;
        memcpy(b->data + b->length, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
        b->length += PyBytes_GET_SIZE(value);
        return 0;
    default:
        PyErr_Format(PyExc_ValueError, "unknown column kind '%c'", kind);
        return -1;
    }

wrong_type:
    PyErr_Format(PyExc_TypeError, "column kind '%c' cannot hold %.100s", kind,
                 Py_TYPE(value)->tp_name);
    return -1;
}

static PyObject *copy_rows(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *rows;
    const char *kinds;
    Py_ssize_t values, columns;
    if (!PyArg_ParseTuple(args, "O!s#n", &PyList_Type, &rows, &kinds, &values, &columns)) {
        return NULL;
    }
    int tail = values > 0 && kinds[values - 1] == '*';
    if (columns > 0x7FFF || columns < values - tail || (!tail && columns != values)) {
        return PyErr_Format(PyExc_ValueError, "%zd columns cannot hold kinds '%s'", columns,
                            kinds);
    }
    Buffer b = {0};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != values) {
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", i, values);
            goto failed;
        }
        if (put_columns(&b, (int)columns) < 0) goto failed;
        for (Py_ssize_t c = 0; c < values; c++) {
            if (put_field(&b, PyTuple_GET_ITEM(row, c), kinds[c]) < 0) goto failed;
        }
    }
    PyObject *encoded = PyBytes_FromStringAndSize(b.data ? b.data : "", b.length);
    PyMem_Free(b.data);
    return encoded;

failed:
    PyMem_Free(b.data);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_traces", read_traces, METH_VARARGS,
     "OTLP trace export protobuf -> [(resource attributes, spans)], or None to fall back."},
    {"copy_rows", copy_rows, METH_VARARGS,
     "Rows -> the tuples of a binary COPY, by column kinds (t, b, h, q, ?, and a last *)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "collectors._wire",
    "Reads OTLP trace export protobuf; writes PostgreSQL's binary COPY format.", -1, methods,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
