/*
 * collectors._wire: reads OTLP ExportTraceServiceRequest protobuf straight into the binary
 * COPY rows the writer sends, or into the Python values the span decoder needs, skipping
 * the protobuf runtime's per-field objects.
 *
 * read_traces(body: bytes, keys: tuple[str, ...], prefixes: tuple[str, ...],
 *             direct: tuple) -> tuple[list, bytes, int, bytes] | None
 *
 * direct is (context, correlation_keys, spec, earliest, latest, days), spec being
 * Observer.compiled. Returns (resources, rows, count, observations). Each resource is
 * (resource attributes, context(resource attributes), its other spans), where context gives
 * (readable, service, res_key) as span_rows takes them. A span that needs nothing but its
 * row, or (a successful stage span of plain text) its row and its observation, is written
 * straight as span_rows would make them: into `rows`, the binary COPY tuples of `count`
 * spans, and `observations`, its UTC day added to `days`. Every other span is given as the
 * tuple (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, selected
 * attributes, attributes as binary jsonb, events, status_code, status_message), each event
 * (name, time_ns, attributes), as collectors.traces builds them from the protobuf
 * runtime's message. Of a span's attributes only those whose key is in `keys` or starts
 * with one of `prefixes` become Python values; all of them are written as jsonb. With
 * earliest > latest no span is written straight.
 *
 * It returns None, with nothing raised, for any body outside the common shape it reads:
 * malformed wire data, invalid UTF-8, deprecated groups, bytes attribute values, a singular
 * message field sent twice (which protobuf would merge), nesting deeper than MAX_DEPTH. The
 * caller then parses the body with the protobuf runtime, which gives the exact verdict.
 * Every read is bounds-checked against the end of the enclosing message.
 *
 * copy_rows(rows: list[tuple], kinds: str) -> bytes
 *
 * The tuples of PostgreSQL's binary COPY format (without header and trailer) for rows whose
 * columns are, by `kinds`, one letter each: t text (str), b bytes (bytea, or any type whose
 * binary form the caller already holds), h int2, q int8, ? bool; None is NULL. A value of
 * another type raises TypeError, an integer out of range OverflowError.
 *
 * span_rows(spans, readable, service, res_key, correlation_keys, spec, earliest, latest,
 *           rows: list, observations: list, days: set) -> list
 *
 * For one resource's spans as read_traces gives them: appends to `rows` (and their UTC days
 * to `days`) the row collectors.traces would build for each span of the common shape —
 * valid IDs, kind, status and times inside [earliest, latest], no events, no NUL
 * characters — and, for those of them naming a stage in their or the resource's attributes
 * (`readable`), the observation Observer.observe would make, successes and failures alike
 * (a failure's kept texts and fingerprint by observations.failure, in `spec`, which is
 * Observer.compiled), unless it carries a status or dead-letter attribute. Returns the
 * other spans, which the Python path rejects or observes with its reasons.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 32
#define PG_EPOCH_US 946684800000000LL /* 2000-01-01 in Unix microseconds */
#define NS_PER_DAY 86400000000000ULL
#define STATUS_ERROR 2
#define AMOUNT_LIMIT 1e15 /* numeric(20, 4) holds 16 digits before the point */

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

static int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    if (read_varint(r, &tag) != OK) return FALLBACK;
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

/* The UTF-8 text of a string field as str; invalid UTF-8 falls back (protobuf refuses it
 * with a reason). */
static int decode_utf8(const Reader *inner, PyObject **out) {
    PyObject *text = PyUnicode_DecodeUTF8((const char *)inner->p, inner->end - inner->p, NULL);
    if (text == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return FAILED;
        PyErr_Clear();
        return FALLBACK;
    }
    Py_XSETREF(*out, text);
    return OK;
}

static int read_str(Reader *r, PyObject **out) {
    Reader inner;
    if (read_delimited(r, &inner) != OK) return FALLBACK;
    return decode_utf8(&inner, out);
}

/* Fields the reader does not keep are still checked as the protobuf runtime checks them
 * (UTF-8 strings, well-formed nested attributes and messages), so that no body is accepted
 * here and refused there. A table lists a message's string, attribute and message fields;
 * fields not listed are skipped by wire type. */
typedef enum { CHECK_STR = 1, CHECK_KEY_VALUE, CHECK_MESSAGE } CheckKind;

typedef struct FieldCheck {
    uint32_t field; /* 0 ends a table */
    CheckKind kind;
    const struct FieldCheck *message; /* the nested message's table, for CHECK_MESSAGE */
} FieldCheck;

static const FieldCheck NOTHING_UNKEPT[] = {{0}};
static const FieldCheck ENTITY_REF[] = {
    {1, CHECK_STR, NULL}, {2, CHECK_STR, NULL}, {3, CHECK_STR, NULL}, {4, CHECK_STR, NULL}, {0}};
static const FieldCheck SCOPE[] = {
    {1, CHECK_STR, NULL}, {2, CHECK_STR, NULL}, {3, CHECK_KEY_VALUE, NULL}, {0}};
static const FieldCheck LINK[] = {{3, CHECK_STR, NULL}, {4, CHECK_KEY_VALUE, NULL}, {0}};
/* What the readers below skip of the messages they read. */
static const FieldCheck RESOURCE_UNKEPT[] = {{3, CHECK_MESSAGE, ENTITY_REF}, {0}};
static const FieldCheck RESOURCE_SPANS_UNKEPT[] = {{3, CHECK_STR, NULL}, {0}};
static const FieldCheck SCOPE_SPANS_UNKEPT[] = {
    {1, CHECK_MESSAGE, SCOPE}, {3, CHECK_STR, NULL}, {0}};
static const FieldCheck SPAN_UNKEPT[] = {{3, CHECK_STR, NULL}, {13, CHECK_MESSAGE, LINK}, {0}};

static int read_key_value(Reader *r, PyObject *into, int depth);

/* Checks (or, if `checks` does not list it, skips) one field whose tag was just read. */
static int check_field(Reader *r, const FieldCheck *checks, uint32_t field, int wire_type,
                       int depth) {
    while (checks->field && checks->field != field) checks++;
    if (!checks->field) return skip_field(r, wire_type);
    Reader inner;
    if (depth > MAX_DEPTH || wire_type != 2 || read_delimited(r, &inner) != OK) return FALLBACK;
    if (checks->kind == CHECK_STR) return valid_utf8(inner.p, inner.end) ? OK : FALLBACK;
    PyObject *ignored = NULL;
    int status;
    if (checks->kind == CHECK_KEY_VALUE) {
        ignored = PyDict_New();
        status = ignored ? read_key_value(&inner, ignored, depth + 1) : FAILED;
    } else {
        status = OK;
        while (inner.p < inner.end && status == OK) {
            if ((status = read_tag(&inner, &field, &wire_type)) != OK) break;
            status = check_field(&inner, checks->message, field, wire_type, depth + 1);
        }
    }
    Py_XDECREF(ignored);
    return status;
}

static int read_attributes(Reader *r, PyObject *into, const FieldCheck *unkept, int depth);

/* AnyValue → str, int, float, bool, list, dict or None (an empty AnyValue). */
static int read_any_value(Reader *r, PyObject **out, int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    PyObject *value = NULL;
    int fields_seen = 0, status = OK;
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        uint64_t number;
        if (read_tag(r, &field, &wire_type) != OK) {
            status = FALLBACK;
            break;
        }
        if (field >= 1 && field <= 7 && ++fields_seen > 1) {
            status = FALLBACK; /* several members of the oneof: protobuf's merge rules */
            break;
        }
        if (field == 1 && wire_type == 2) {
            status = read_str(r, &value);
        } else if (field == 2 && wire_type == 0) {
            if ((status = read_varint(r, &number)) == OK) {
                value = PyBool_FromLong(number != 0);
            }
        } else if (field == 3 && wire_type == 0) {
            if ((status = read_varint(r, &number)) == OK) {
                value = PyLong_FromLongLong((long long)(int64_t)number);
                if (value == NULL) status = FAILED;
            }
        } else if (field == 4 && wire_type == 1) {
            if ((status = read_fixed64(r, &number)) == OK) {
                double d;
                memcpy(&d, &number, sizeof d);
                value = PyFloat_FromDouble(d);
                if (value == NULL) status = FAILED;
            }
        } else if (field == 5 && wire_type == 2) { /* ArrayValue { repeated AnyValue values = 1 } */
            Reader array;
            if ((status = read_delimited(r, &array)) != OK) break;
            value = PyList_New(0);
            if (value == NULL) {
                status = FAILED;
                break;
            }
            while (array.p < array.end && status == OK) {
                if ((status = read_tag(&array, &field, &wire_type)) != OK) break;
                if (field != 1 || wire_type != 2) {
                    status = skip_field(&array, wire_type);
                    continue;
                }
                Reader item_reader;
                PyObject *item = NULL;
                if ((status = read_delimited(&array, &item_reader)) != OK) break;
                if ((status = read_any_value(&item_reader, &item, depth + 1)) != OK) break;
                if (PyList_Append(value, item) < 0) status = FAILED;
                Py_DECREF(item);
            }
        } else if (field == 6 && wire_type == 2) { /* KeyValueList { repeated KeyValue values = 1 } */
            Reader list;
            if ((status = read_delimited(r, &list)) != OK) break;
            value = PyDict_New();
            if (value == NULL) {
                status = FAILED;
                break;
            }
            status = read_attributes(&list, value, NOTHING_UNKEPT, depth + 1);
        } else if (field >= 1 && field <= 7) {
            status = FALLBACK; /* bytes_value, or a member with an unexpected wire type */
        } else {
            status = skip_field(r, wire_type);
        }
    }
    if (status != OK) {
        Py_XDECREF(value);
        return status;
    }
    if (value == NULL) value = Py_NewRef(Py_None);
    *out = value;
    return OK;
}

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
            /* every occurrence must be UTF-8, as the runtime checks each before keeping one */
            if (read_delimited(r, key) != OK || !valid_utf8(key->p, key->end)) return FALLBACK;
        } else if (field == 2 && wire_type == 2) {
            if ((*has_value)++ || read_delimited(r, value) != OK) return FALLBACK;
        } else if (field <= 2) {
            return FALLBACK;
        } else if ((status = skip_field(r, wire_type)) != OK) {
            return status;
        }
    }
    return OK;
}

/* Sets into[key] = value, both decoded from a KeyValue's parts; `name` is the key as str
 * when the caller holds it already (NULL: decoded here). */
static int set_item(PyObject *into, const Reader *key, PyObject *name, Reader *value,
                    int has_value, int depth) {
    PyObject *python = NULL;
    int status = OK;
    if (name != NULL) Py_INCREF(name);
    else status = decode_utf8(key, &name);
    if (status == OK && has_value) status = read_any_value(value, &python, depth + 1);
    else if (status == OK) python = Py_NewRef(Py_None);
    if (status == OK && PyDict_SetItem(into, name, python) < 0) status = FAILED;
    Py_XDECREF(name);
    Py_XDECREF(python);
    return status;
}

static int read_key_value(Reader *r, PyObject *into, int depth) {
    Reader key, value = {NULL, NULL};
    int has_value, status = split_key_value(r, &key, &value, &has_value);
    return status == OK ? set_item(into, &key, NULL, &value, has_value, depth) : status;
}

/* The KeyValue entries (field 1) of a message whose other fields are `unkept`. */
static int read_attributes(Reader *r, PyObject *into, const FieldCheck *unkept, int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field == 1 && wire_type == 2) {
            Reader inner;
            if (read_delimited(r, &inner) != OK) return FALLBACK;
            status = read_key_value(&inner, into, depth);
        } else if (field == 1) {
            return FALLBACK;
        } else {
            status = check_field(r, unkept, field, wire_type, depth);
        }
        if (status != OK) return status;
    }
    return OK;
}


/* Span.Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; } */
static int read_event(Reader *r, PyObject *events) {
    PyObject *name = NULL, *attrs = PyDict_New();
    uint64_t time_ns = 0;
    int status = attrs ? OK : FAILED;
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        if (field == 1 && wire_type == 1) {
            status = read_fixed64(r, &time_ns);
        } else if (field == 2 && wire_type == 2) {
            status = read_str(r, &name);
        } else if (field == 3 && wire_type == 2) {
            Reader inner;
            if ((status = read_delimited(r, &inner)) == OK) {
                status = read_key_value(&inner, attrs, 1);
            }
        } else if (field <= 3) {
            status = FALLBACK;
        } else {
            status = skip_field(r, wire_type);
        }
    }
    if (status == OK) {
        if (name == NULL) name = PyUnicode_FromStringAndSize("", 0);
        PyObject *event = name ? Py_BuildValue("(OKO)", name, (unsigned long long)time_ns, attrs)
                               : NULL;
        if (event == NULL || PyList_Append(events, event) < 0) status = FAILED;
        Py_XDECREF(event);
    }
    Py_XDECREF(name);
    Py_XDECREF(attrs);
    return status;
}


/* ---- span attributes as jsonb ---------------------------------------------------------
 * A span's attributes go to the database as JSON only; Python needs few of them (the keys
 * the attribute map names). So the reader writes every attribute straight into jsonb text
 * and makes Python values only for the selected keys. The JSON is what orjson would write
 * for the runtime's values (NUL characters dropped, non-finite numbers as null), up to
 * spelling that jsonb does not keep (key order, number format). */

typedef struct {
    Py_ssize_t count, prefix_count;
    PyObject *names; /* the selected keys as str (a tuple), in the order of `keys` */
    const char **keys, **prefixes;
    Py_ssize_t *key_lengths, *prefix_lengths;
} Selection;

#define BY_PREFIX (-1)
#define NOT_SELECTED (-2)

/* Whether `key` is selected: its index in sel->names, BY_PREFIX for a key that starts with
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
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c == '\n') {
            *out++ = '\\', *out++ = 'n';
        } else if (c == '\t') {
            *out++ = '\\', *out++ = 't';
        } else if (c == '\r') {
            *out++ = '\\', *out++ = 'r';
        } else if (c == '\b') {
            *out++ = '\\', *out++ = 'b';
        } else if (c == '\f') {
            *out++ = '\\', *out++ = 'f';
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

static int json_key_values(Buffer *b, Reader *r, int depth);

/* An AnyValue as JSON, under the same rules as read_any_value. */
static int json_any_value(Buffer *b, Reader *r, int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    Reader value = {NULL, NULL};
    uint32_t value_field = 0;
    uint64_t number = 0;
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field < 1 || field > 7) {
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
        int status = json_raw(b, "[", 1), first = 1;
        while (value.p < value.end && status == OK) {
            uint32_t field;
            int wire_type;
            if (read_tag(&value, &field, &wire_type) != OK) return FALLBACK;
            if (field != 1) {
                status = skip_field(&value, wire_type);
                continue;
            }
            Reader item;
            if (wire_type != 2 || read_delimited(&value, &item) != OK) return FALLBACK;
            if (!first && (status = json_raw(b, ",", 1)) != OK) break;
            first = 0;
            status = json_any_value(b, &item, depth + 1);
        }
        return status == OK ? json_raw(b, "]", 1) : status;
    }
    default: /* 6: KeyValueList { repeated KeyValue values = 1 } */
        return json_key_values(b, &value, depth + 1);
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

/* A KeyValueList's entries as a JSON object. */
static int json_key_values(Buffer *b, Reader *r, int depth) {
    if (depth > MAX_DEPTH) return FALLBACK;
    int status = json_raw(b, "{", 1), first = 1;
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field != 1) {
            status = skip_field(r, wire_type);
            continue;
        }
        Reader entry;
        if (wire_type != 2 || read_delimited(r, &entry) != OK) return FALLBACK;
        if (!first && (status = json_raw(b, ",", 1)) != OK) break;
        first = 0;
        Reader key, value;
        int has_value;
        status = json_key_value(b, &entry, &key, &value, &has_value, depth);
    }
    return status == OK ? json_raw(b, "}", 1) : status;
}

/* ---- spans ----------------------------------------------------------------------------
 * A span is first read as it lies in the body (RawSpan: where each field is, its selected
 * attributes, its events), with its attributes written as jsonb on the way. Then it is
 * either written straight as a COPY row (direct_row) or made into the Python tuple the
 * decoder takes (span_tuple). */

/* A selected attribute of a span: its key and value as sent, and the key's str when it is
 * one of the selected keys (NULL for one selected by prefix, decoded when needed). */
typedef struct {
    Reader key, value;
    int has_value;
    Py_ssize_t index; /* in Selection.names, or BY_PREFIX */
    PyObject *name;   /* borrowed from Selection.names */
} Entry;

typedef struct {
    Reader trace_id, span_id, parent, name, status_message; /* p == NULL: not sent */
    uint64_t start, end;
    int32_t kind, code;
    Entry *entries; /* the selected attributes, in the order sent */
    Py_ssize_t entry_count, entry_capacity;
    Reader *events;
    Py_ssize_t event_count, event_capacity;
} RawSpan;

static void raw_span_free(RawSpan *s) {
    PyMem_Free(s->entries);
    PyMem_Free(s->events);
}

/* Appends one item of `size` bytes to a PyMem array, growing it; NULL on failure. */
static void *grow(void **items, Py_ssize_t *count, Py_ssize_t *capacity, size_t size) {
    if (*count == *capacity) {
        Py_ssize_t more = *capacity ? 2 * *capacity : 16;
        void *larger = PyMem_Realloc(*items, more * size);
        if (larger == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        *items = larger;
        *capacity = more;
    }
    return (char *)*items + (*count)++ * size;
}

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

/* Reads a Span into `s` and its attributes as binary jsonb into `json`. */
static int read_span(Reader *r, RawSpan *s, const Selection *sel, Buffer *json) {
    *s = (RawSpan){.entries = s->entries, .entry_capacity = s->entry_capacity,
                   .events = s->events, .event_capacity = s->event_capacity}; /* arrays kept */
    int status_seen = 0;
    uint64_t number;
    json->length = 0;
    int status = json_raw(json, "\x01{", 2); /* jsonb version 1, then JSON */
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner;
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        switch (field) {
        case 1:
            status = wire_type == 2 ? read_delimited(r, &s->trace_id) : FALLBACK;
            break;
        case 2:
            status = wire_type == 2 ? read_delimited(r, &s->span_id) : FALLBACK;
            break;
        case 4:
            status = wire_type == 2 ? read_delimited(r, &s->parent) : FALLBACK;
            break;
        case 5:
            status = wire_type == 2 ? read_text(r, &s->name) : FALLBACK;
            break;
        case 6:
            if (wire_type != 0) status = FALLBACK;
            else if ((status = read_varint(r, &number)) == OK) s->kind = (int32_t)number;
            break;
        case 7:
            status = wire_type == 1 ? read_fixed64(r, &s->start) : FALLBACK;
            break;
        case 8:
            status = wire_type == 1 ? read_fixed64(r, &s->end) : FALLBACK;
            break;
        case 9: {
            Reader key, value;
            int has_value;
            if (wire_type != 2 || read_delimited(r, &inner) != OK) {
                status = FALLBACK;
                break;
            }
            if (json->length > 2 && (status = json_raw(json, ",", 1)) != OK) break;
            if ((status = json_key_value(json, &inner, &key, &value, &has_value, 0)) != OK) break;
            Py_ssize_t index = selected_index(sel, &key);
            if (index == NOT_SELECTED) break;
            Entry *entry = grow((void **)&s->entries, &s->entry_count, &s->entry_capacity,
                                sizeof *entry);
            if (entry == NULL) {
                status = FAILED;
                break;
            }
            *entry = (Entry){key, value, has_value, index,
                             index >= 0 ? PyTuple_GET_ITEM(sel->names, index) : NULL};
            break;
        }
        case 11: {
            if (wire_type != 2 || read_delimited(r, &inner) != OK) {
                status = FALLBACK;
                break;
            }
            Reader *event = grow((void **)&s->events, &s->event_count, &s->event_capacity,
                                 sizeof *event);
            if (event == NULL) status = FAILED;
            else *event = inner; /* read (and checked) by span_tuple */
            break;
        }
        case 15:
            if (wire_type != 2 || status_seen++ || read_delimited(r, &inner) != OK) {
                status = FALLBACK;
                break;
            }
            status = read_status(&inner, &s->status_message, &s->code);
            break;
        default: /* trace_state, flags, links, dropped counts: not stored */
            status = check_field(r, SPAN_UNKEPT, field, wire_type, 0);
        }
    }
    return status == OK ? json_raw(json, "}", 1) : status;
}

static PyObject *bytes_of(const Reader *r) {
    return PyBytes_FromStringAndSize((const char *)r->p, r->p ? r->end - r->p : 0);
}

static PyObject *str_of(const Reader *r) {
    return PyUnicode_DecodeUTF8((const char *)r->p, r->p ? r->end - r->p : 0, NULL);
}

/* Appends the span's tuple (see read_traces) to `spans`. */
static int span_tuple(const RawSpan *s, const Buffer *json, PyObject *spans) {
    PyObject *attrs = PyDict_New(), *events = PyList_New(0), *span = NULL;
    int status = attrs && events ? OK : FAILED;
    for (Py_ssize_t i = 0; i < s->entry_count && status == OK; i++) {
        const Entry *entry = &s->entries[i];
        Reader value = entry->value;
        status = set_item(attrs, &entry->key, entry->name, &value, entry->has_value, 0);
    }
    for (Py_ssize_t i = 0; i < s->event_count && status == OK; i++) {
        Reader event = s->events[i];
        status = read_event(&event, events);
    }
    if (status == OK && (span = PyTuple_New(12)) != NULL) {
        PyObject *items[] = {
            bytes_of(&s->trace_id), bytes_of(&s->span_id), bytes_of(&s->parent), str_of(&s->name),
            PyLong_FromLong(s->kind), PyLong_FromUnsignedLongLong(s->start),
            PyLong_FromUnsignedLongLong(s->end), Py_NewRef(attrs),
            PyBytes_FromStringAndSize(json->data, json->length), Py_NewRef(events),
            PyLong_FromLong(s->code), str_of(&s->status_message)};
        for (int i = 0; i < 12; i++) {
            if (items[i] == NULL) status = FAILED;
            PyTuple_SET_ITEM(span, i, items[i]);
        }
    }
    if (status == OK && (span == NULL || PyList_Append(spans, span) < 0)) status = FAILED;
    Py_XDECREF(span);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    return status;
}

/* ---- spans written straight as COPY rows ------------------------------------------------
 * A span of the common shape span_rows takes, its correlation ID a string or absent, that
 * names no stage, or is a successful stage span of plain text without status or
 * dead-letter attributes, is written here as the row (and observation) span_rows would
 * make, without any Python value. */

#define MAX_CORRELATION 256

/* Positions in Observer.compiled (`spec`), which both observation paths read. */
enum {
    SPEC_PROCESS, SPEC_STAGE, SPEC_SYSTEM, SPEC_PYTHON, SPEC_BUSINESS, SPEC_JSONB,
    SPEC_ERROR_TYPE, SPEC_ERROR_MESSAGE, SPEC_FAILURE, SPEC_SIZE
};

static int check_spec(PyObject *spec) {
    if (PyTuple_Check(spec) && PyTuple_GET_SIZE(spec) == SPEC_SIZE) return 0;
    PyErr_SetString(PyExc_TypeError, "spec must be Observer.compiled");
    return -1;
}

/* Keys of one field, as indexes in Selection.names (NOT_SELECTED: never read). */
typedef struct {
    Py_ssize_t count, *indexes;
} Keys;

typedef struct {
    Keys keys;
    Reader name; /* UTF-8 of the field's name, a str of Observer.compiled */
    int is_amount;
} BusinessField;

typedef struct {
    PyObject *context; /* res_attrs -> (readable, service, res_key) */
    Keys correlation, stage, process, system, python, error_type, error_message;
    BusinessField *business;
    Py_ssize_t business_count;
    uint64_t earliest, latest;
    PyObject *days; /* a set, of the UTC days rows fall on */
    uint64_t last_day;
    Buffer rows, observations;
    Buffer document; /* an observation's business document, as it is built */
    Py_ssize_t count;
} Direct;

/* What a resource's spans share: from the caller's context(res_attrs). */
typedef struct {
    PyObject *context;         /* (readable, service, res_key) */
    Reader service, res_key;   /* res_key.p == NULL: None */
    PyObject **readable;       /* per selected key: its value in readable (borrowed), or NULL */
} Resource;

static void resource_clear(Resource *res) {
    PyMem_Free(res->readable);
    Py_CLEAR(res->context);
}

static int resource_of(const Direct *d, const Selection *sel, PyObject *attrs, Resource *res) {
    PyObject *context = PyObject_CallOneArg(d->context, attrs), *readable, *service, *res_key;
    if (context == NULL) return FAILED;
    res->context = context;
    if (!PyArg_ParseTuple(context, "O!UO", &PyDict_Type, &readable, &service, &res_key)) {
        return FAILED;
    }
    Py_ssize_t length;
    const char *text = PyUnicode_AsUTF8AndSize(service, &length);
    if (text == NULL) return FAILED;
    res->service = (Reader){(const uint8_t *)text, (const uint8_t *)text + length};
    if (res_key != Py_None) {
        if (!PyBytes_Check(res_key)) {
            PyErr_SetString(PyExc_TypeError, "res_key must be bytes or None");
            return FAILED;
        }
        const uint8_t *key = (const uint8_t *)PyBytes_AS_STRING(res_key);
        res->res_key = (Reader){key, key + PyBytes_GET_SIZE(res_key)};
    }
    if ((res->readable = PyMem_Calloc(sel->count + 1, sizeof *res->readable)) == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    for (Py_ssize_t i = 0; i < sel->count; i++) {
        res->readable[i] = PyDict_GetItemWithError(readable, PyTuple_GET_ITEM(sel->names, i));
        if (res->readable[i] == NULL && PyErr_Occurred()) return FAILED;
    }
    return OK;
}

/* The last attribute of `s` with selected key `index`, or NULL. */
static const Entry *last_entry(const RawSpan *s, Py_ssize_t index) {
    for (Py_ssize_t i = s->entry_count - 1; i >= 0 && index >= 0; i--) {
        if (s->entries[i].index == index) return &s->entries[i];
    }
    return NULL;
}

static int valid_id(const Reader *r, Py_ssize_t size) {
    if (r->p == NULL || r->end - r->p != size) return 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (r->p[i]) return 1;
    }
    return 0; /* all zero: invalid */
}

static int has_nul(const Reader *r) {
    return r->p != NULL && memchr(r->p, 0, r->end - r->p) != NULL;
}

/* An attribute value as the observer would see it, without making it a Python value. */
enum { ABSENT, TEXT, BOOLEAN, INTEGER, DOUBLE, OTHER, PYTHON };
typedef struct {
    int kind;
    Reader text;     /* TEXT: its UTF-8 */
    int64_t integer; /* BOOLEAN, INTEGER */
    double number;   /* DOUBLE */
} Value;

/* The value of a span attribute (ABSENT for None). It was checked when written as JSON. */
static void entry_value(const Entry *entry, Value *v) {
    Reader r = entry->value;
    uint64_t number;
    v->kind = ABSENT;
    while (entry->has_value && r.p < r.end) {
        uint32_t field;
        int wire_type;
        if (read_tag(&r, &field, &wire_type) != OK) break;
        if (field == 1 && wire_type == 2 && read_delimited(&r, &v->text) == OK) {
            v->kind = TEXT;
        } else if ((field == 2 || field == 3) && wire_type == 0 && read_varint(&r, &number) == OK) {
            v->kind = field == 2 ? BOOLEAN : INTEGER;
            v->integer = field == 2 ? number != 0 : (int64_t)number;
        } else if (field == 4 && wire_type == 1 && read_fixed64(&r, &number) == OK) {
            v->kind = DOUBLE;
            memcpy(&v->number, &number, sizeof v->number);
        } else if (field >= 1 && field <= 7) {
            v->kind = OTHER;
        } else if (skip_field(&r, wire_type) == OK) {
            continue;
        }
        return;
    }
}

/* mapping.first_value over {**readable, **attrs}: the value of the first of `keys` that is
 * there and not None. A value from the resource is TEXT if it is a str, else PYTHON. */
static int first_of(const RawSpan *s, const Resource *res, const Keys *keys, Value *v) {
    v->kind = ABSENT;
    for (Py_ssize_t i = 0; i < keys->count; i++) {
        Py_ssize_t index = keys->indexes[i];
        if (index < 0) continue;
        const Entry *entry = last_entry(s, index);
        if (entry != NULL) {
            entry_value(entry, v);
            if (v->kind == ABSENT) continue;
            return OK;
        }
        PyObject *value = res->readable[index];
        if (value == NULL || value == Py_None) continue;
        v->kind = PYTHON;
        if (PyUnicode_Check(value)) {
            Py_ssize_t length;
            const char *text = PyUnicode_AsUTF8AndSize(value, &length);
            if (text == NULL) return FAILED;
            v->kind = TEXT;
            v->text = (Reader){(const uint8_t *)text, (const uint8_t *)text + length};
        }
        return OK;
    }
    return OK;
}

/* TEXT without NUL characters (the Python path cleans them out). */
static int plain(const Value *v) { return v->kind == TEXT && !has_nul(&v->text); }

/* The first `limit` characters of UTF-8 text: their length in bytes. */
static Py_ssize_t utf8_prefix(const uint8_t *text, Py_ssize_t length, Py_ssize_t limit) {
    Py_ssize_t characters = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if ((text[i] & 0xC0) != 0x80 && characters++ == limit) return i;
    }
    return length;
}

/* The correlation ID as Observer.correlation_id finds it, in *id (the trace ID in hex, in
 * `hex`, when there is none); *usable is cleared when the span needs the Python path. */
static int correlation_text(const Direct *d, const Resource *res, const RawSpan *s, char *hex,
                            Reader *id, int *usable) {
    Value v;
    if (first_of(s, res, &d->correlation, &v) != OK) return FAILED;
    *usable = v.kind == ABSENT || plain(&v); /* else str() of it, or NULs cleaned: Python */
    if (v.kind == TEXT && v.text.p != v.text.end) {
        *id = v.text;
        id->end = id->p + utf8_prefix(id->p, id->end - id->p, MAX_CORRELATION);
        return OK;
    }
    static const char digits[] = "0123456789abcdef"; /* none, or empty: the trace ID */
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[s->trace_id.p[i] >> 4];
        hex[2 * i + 1] = digits[s->trace_id.p[i] & 15];
    }
    *id = (Reader){(const uint8_t *)hex, (const uint8_t *)hex + 32};
    return OK;
}

/* What business_value did with a field. */
enum { LEFT_OUT, KEPT, NEEDS_PYTHON, BROKEN };

/* A business field's value as Observer._business keeps it, written as JSON (KEPT), or
 * LEFT_OUT, or NEEDS_PYTHON (the span takes the Python path), or BROKEN (an exception). */
static int business_value(Buffer *b, const BusinessField *field, const Value *v) {
    double amount;
    if (v->kind == PYTHON) return NEEDS_PYTHON;
    if (!field->is_amount) {
        if (!plain(v)) return NEEDS_PYTHON; /* str() of another type, or NULs to clean */
        int status = json_string(b, &v->text);
        return status == OK ? KEPT : status == FAILED ? BROKEN : NEEDS_PYTHON;
    }
    if (v->kind == TEXT) { /* float() of a str: Python's own parser */
        PyObject *text = str_of(&v->text);
        PyObject *number = text ? PyFloat_FromString(text) : NULL;
        Py_XDECREF(text);
        if (number == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) return BROKEN;
            PyErr_Clear(); /* not a number: kept in the raw attributes only */
            return LEFT_OUT;
        }
        amount = PyFloat_AS_DOUBLE(number);
        Py_DECREF(number);
    } else if (v->kind == BOOLEAN || v->kind == INTEGER) {
        amount = (double)v->integer;
    } else if (v->kind == DOUBLE) {
        amount = v->number;
    } else {
        return LEFT_OUT; /* float() refuses lists and dicts */
    }
    if (!(fabs(amount) < AMOUNT_LIMIT)) return LEFT_OUT;
    char *text = PyOS_double_to_string(amount, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return BROKEN;
    int status = json_raw(b, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return status == OK ? KEPT : BROKEN;
}

/* The observation Observer.observe makes of a successful stage span whose stage is
 * `stage`, written as a COPY row; *usable is cleared when the span needs the Python path
 * (a failure, a status or dead-letter attribute, a value that is not plain text). */
static int direct_observation(Direct *d, const Resource *res, const RawSpan *s,
                              const Reader *id, const Value *stage, int *usable) {
    Value other, process, system, error_type, message;
    *usable = 0;
    if (s->code == STATUS_ERROR || s->end > INT64_MAX || !plain(stage) ||
        first_of(s, res, &d->python, &other) != OK || other.kind != ABSENT ||
        first_of(s, res, &d->process, &process) != OK || !plain(&process) ||
        first_of(s, res, &d->system, &system) != OK ||
        first_of(s, res, &d->error_type, &error_type) != OK ||
        first_of(s, res, &d->error_message, &message) != OK) {
        return PyErr_Occurred() ? FAILED : OK;
    }
    if (!(system.kind == ABSENT || plain(&system)) ||
        !(error_type.kind == ABSENT || plain(&error_type)) ||
        !(message.kind == ABSENT || plain(&message))) {
        return OK;
    }
    if (system.kind == ABSENT || system.text.p == system.text.end) system.text = res->service;
    if (message.kind == ABSENT || message.text.p == message.text.end) {
        message.kind = s->status_message.p != s->status_message.end ? TEXT : ABSENT;
        message.text = s->status_message;
    }
    Buffer *json = &d->document; /* the business document, as binary jsonb */
    json->length = 0;
    if (json_raw(json, "\x01{", 2) != OK) return FAILED;
    for (Py_ssize_t i = 0; i < d->business_count; i++) {
        const BusinessField *field = &d->business[i];
        Value v;
        Py_ssize_t mark = json->length;
        if (first_of(s, res, &field->keys, &v) != OK) return FAILED;
        if (v.kind == ABSENT) continue;
        if ((json->length > 2 && json_raw(json, ",", 1) != OK) ||
            json_string(json, &field->name) != OK || json_raw(json, ":", 1) != OK) {
            return FAILED;
        }
        int kept = business_value(json, field, &v);
        if (kept == BROKEN) return FAILED;
        if (kept == NEEDS_PYTHON) return OK;
        if (kept == LEFT_OUT) json->length = mark;
    }
    if (json_raw(json, "}", 1) != OK) return FAILED;
    uint8_t record_key[24];
    memcpy(record_key, s->trace_id.p, 16);
    memcpy(record_key + 16, s->span_id.p, 8);
    Buffer *b = &d->observations;
    if (put_columns(b, 14) < 0 || put_data(b, record_key, 24) < 0 || put_reader(b, id) < 0 ||
        put_reader(b, &process.text) < 0 || put_reader(b, &stage->text) < 0 ||
        put_reader(b, &system.text) < 0 || put_int(b, (int64_t)s->end, 8) < 0 ||
        put_data(b, "\x01", 1) < 0 || put_data(b, json->data, json->length) < 0 ||
        (error_type.kind == TEXT ? put_reader(b, &error_type.text) : put_null(b)) < 0 ||
        (message.kind == TEXT ? put_reader(b, &message.text) : put_null(b)) < 0 ||
        put_null(b) < 0 || put_data(b, "\x00", 1) < 0 || put_reader(b, &s->trace_id) < 0 ||
        put_reader(b, &s->span_id) < 0) {
        return FAILED;
    }
    *usable = 1;
    return OK;
}

/* Writes the span's row (and its observation) if it needs nothing else, setting *written. */
static int direct_row(Direct *d, const Resource *res, const RawSpan *s, const Buffer *json,
                      int *written) {
    Py_ssize_t parent_length = s->parent.p ? s->parent.end - s->parent.p : 0;
    *written = 0;
    if (!valid_id(&s->trace_id, 16) || !valid_id(&s->span_id, 8) ||
        (parent_length != 0 && parent_length != 8) || s->end < s->start || s->kind < 0 ||
        s->kind > 5 || s->code < 0 || s->code > 2 || s->start < d->earliest ||
        s->start > d->latest || s->event_count || has_nul(&s->name) ||
        has_nul(&s->status_message)) {
        return OK;
    }
    Reader id;
    Value stage;
    char hex[32];
    int usable;
    if (correlation_text(d, res, s, hex, &id, &usable) != OK) return FAILED;
    if (!usable) return OK;
    if (first_of(s, res, &d->stage, &stage) != OK) return FAILED;
    if (stage.kind != ABSENT) { /* observed: the observation first, if it can be made here */
        if (direct_observation(d, res, s, &id, &stage, &usable) != OK) return FAILED;
        if (!usable) return OK;
    }
    Buffer *b = &d->rows;
    if (put_columns(b, 14) < 0 || put_reader(b, &id) < 0 || put_reader(b, &s->trace_id) < 0 ||
        put_reader(b, &s->span_id) < 0 ||
        put_int(b, (int64_t)(s->start / 1000) - PG_EPOCH_US, 8) < 0 ||
        put_int(b, (int64_t)(s->end / 1000) - PG_EPOCH_US, 8) < 0 ||
        (parent_length ? put_reader(b, &s->parent) : put_null(b)) < 0 ||
        put_reader(b, &s->name) < 0 || put_int(b, s->kind, 2) < 0 || put_int(b, s->code, 2) < 0 ||
        (s->status_message.p != s->status_message.end ? put_reader(b, &s->status_message)
                                                      : put_null(b)) < 0 ||
        put_reader(b, &res->service) < 0 ||
        (res->res_key.p ? put_reader(b, &res->res_key) : put_null(b)) < 0 ||
        put_data(b, json->data, json->length) < 0 || put_null(b) < 0) {
        return FAILED;
    }
    *written = 1;
    uint64_t day = s->start / NS_PER_DAY;
    if (d->count++ == 0 || day != d->last_day) {
        PyObject *number = PyLong_FromUnsignedLongLong(day);
        int failed = number == NULL || PySet_Add(d->days, number) < 0;
        Py_XDECREF(number);
        if (failed) return FAILED;
        d->last_day = day;
    }
    return OK;
}

/* ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; } */
static int read_scope_spans(Reader *r, PyObject *spans, const Selection *sel, Buffer *json,
                            RawSpan *raw, Direct *d, const Resource *res) {
    while (r->p < r->end) {
        uint32_t field;
        int wire_type, status;
        if (read_tag(r, &field, &wire_type) != OK) return FALLBACK;
        if (field == 2 && wire_type == 2) {
            Reader inner;
            if (read_delimited(r, &inner) != OK) return FALLBACK;
            int written = 0;
            status = read_span(&inner, raw, sel, json);
            if (status == OK) status = direct_row(d, res, raw, json, &written);
            if (status == OK && !written) status = span_tuple(raw, json, spans);
        } else if (field == 2) {
            return FALLBACK;
        } else {
            status = check_field(r, SCOPE_SPANS_UNKEPT, field, wire_type, 0);
        }
        if (status != OK) return status;
    }
    return OK;
}

/* ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 * Resource { repeated KeyValue attributes = 1; }
 * The resource is read first, wherever it lies: its spans' rows need what context makes
 * of it. */
static int read_resource_spans(Reader *r, PyObject *resources, const Selection *sel,
                               Buffer *json, RawSpan *raw, Direct *d) {
    PyObject *attrs = PyDict_New(), *spans = PyList_New(0);
    Resource res = {0};
    int resource_seen = 0, status = attrs && spans ? OK : FAILED;
    Reader first = *r;
    while (first.p < first.end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner;
        if ((status = read_tag(&first, &field, &wire_type)) != OK) break;
        if (field == 1 && wire_type == 2) {
            if (resource_seen++ || read_delimited(&first, &inner) != OK) status = FALLBACK;
            else status = read_attributes(&inner, attrs, RESOURCE_UNKEPT, 0);
        } else {
            status = skip_field(&first, wire_type);
        }
    }
    if (status == OK) status = resource_of(d, sel, attrs, &res);
    while (r->p < r->end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner;
        if ((status = read_tag(r, &field, &wire_type)) != OK) break;
        if ((field == 1 || field == 2) && wire_type != 2) {
            status = FALLBACK;
        } else if (field == 1) {
            status = read_delimited(r, &inner); /* read above */
        } else if (field == 2) {
            if ((status = read_delimited(r, &inner)) == OK) {
                status = read_scope_spans(&inner, spans, sel, json, raw, d, &res);
            }
        } else {
            status = check_field(r, RESOURCE_SPANS_UNKEPT, field, wire_type, 0);
        }
    }
    if (status == OK) {
        PyObject *item = PyTuple_Pack(3, attrs, res.context, spans);
        if (item == NULL || PyList_Append(resources, item) < 0) status = FAILED;
        Py_XDECREF(item);
    }
    resource_clear(&res);
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

/* Where each of `keys` (a tuple of str) is in sel->names, or NOT_SELECTED. */
static int keys_of(const Selection *sel, PyObject *keys, Keys *out) {
    if (!PyTuple_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "keys must be a tuple");
        return -1;
    }
    out->count = PyTuple_GET_SIZE(keys);
    if ((out->indexes = PyMem_Calloc(out->count + 1, sizeof *out->indexes)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < out->count; i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        out->indexes[i] = NOT_SELECTED;
        for (Py_ssize_t j = 0; j < sel->count && out->indexes[i] == NOT_SELECTED; j++) {
            int equal = PyObject_RichCompareBool(key, PyTuple_GET_ITEM(sel->names, j), Py_EQ);
            if (equal < 0) return -1;
            if (equal) out->indexes[i] = j;
        }
    }
    return 0;
}

/* The keys of every field Direct reads, from Observer.compiled (`spec`). */
static int direct_of(const Selection *sel, PyObject *correlation_keys, PyObject *spec, Direct *d) {
    if (check_spec(spec) < 0) return -1;
    PyObject *fields = PyTuple_GET_ITEM(spec, SPEC_BUSINESS);
    if (keys_of(sel, correlation_keys, &d->correlation) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_PROCESS), &d->process) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_STAGE), &d->stage) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_SYSTEM), &d->system) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_PYTHON), &d->python) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_ERROR_TYPE), &d->error_type) < 0 ||
        keys_of(sel, PyTuple_GET_ITEM(spec, SPEC_ERROR_MESSAGE), &d->error_message) < 0 ||
        !PyTuple_Check(fields)) {
        return -1;
    }
    d->business_count = PyTuple_GET_SIZE(fields);
    if ((d->business = PyMem_Calloc(d->business_count + 1, sizeof *d->business)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < d->business_count; i++) { /* (name, keys, is_amount) */
        PyObject *name, *keys, *field = PyTuple_GET_ITEM(fields, i);
        BusinessField *into = &d->business[i];
        Py_ssize_t length;
        const char *text;
        if (!PyArg_ParseTuple(field, "UO!p", &name, &PyTuple_Type, &keys, &into->is_amount) ||
            (text = PyUnicode_AsUTF8AndSize(name, &length)) == NULL ||
            keys_of(sel, keys, &into->keys) < 0) {
            return -1;
        }
        into->name = (Reader){(const uint8_t *)text, (const uint8_t *)text + length};
    }
    return 0;
}

static void direct_free(Direct *d) {
    Keys *all[] = {&d->correlation, &d->process, &d->stage, &d->system, &d->python,
                   &d->error_type, &d->error_message};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) PyMem_Free(all[i]->indexes);
    for (Py_ssize_t i = 0; d->business != NULL && i < d->business_count; i++) {
        PyMem_Free(d->business[i].keys.indexes);
    }
    PyMem_Free(d->business);
    PyMem_Free(d->rows.data);
    PyMem_Free(d->observations.data);
    PyMem_Free(d->document.data);
}

static PyObject *bytes_of_buffer(const Buffer *b) {
    return PyBytes_FromStringAndSize(b->data ? b->data : "", b->length);
}

static PyObject *read_traces(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer view;
    PyObject *keys, *prefixes, *direct, *correlation_keys, *spec, *resources = NULL,
        *result = NULL;
    unsigned long long earliest, latest;
    if (!PyArg_ParseTuple(args, "y*O!O!O!", &view, &PyTuple_Type, &keys, &PyTuple_Type,
                          &prefixes, &PyTuple_Type, &direct)) {
        return NULL;
    }
    Selection sel = {0};
    Direct d = {0};
    RawSpan raw = {{0}};
    Buffer json = {0};
    int status = FAILED;
    sel.names = keys;
    if (!PyArg_ParseTuple(direct, "OO!OKKO!", &d.context, &PyTuple_Type, &correlation_keys,
                          &spec, &earliest, &latest, &PySet_Type, &d.days) ||
        utf8_of(keys, &sel.keys, &sel.key_lengths, &sel.count) < 0 ||
        utf8_of(prefixes, &sel.prefixes, &sel.prefix_lengths, &sel.prefix_count) < 0 ||
        direct_of(&sel, correlation_keys, spec, &d) < 0) {
        goto done;
    }
    d.earliest = earliest, d.latest = latest;
    Reader r = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    resources = PyList_New(0);
    status = resources ? OK : FAILED;
    while (r.p < r.end && status == OK) {
        uint32_t field;
        int wire_type;
        Reader inner;
        if ((status = read_tag(&r, &field, &wire_type)) != OK) break;
        if (field == 1 && wire_type == 2) {
            if ((status = read_delimited(&r, &inner)) == OK) {
                status = read_resource_spans(&inner, resources, &sel, &json, &raw, &d);
            }
        } else if (field == 1) {
            status = FALLBACK;
        } else {
            status = skip_field(&r, wire_type);
        }
    }
    if (status == OK) {
        PyObject *rows = bytes_of_buffer(&d.rows), *observations = bytes_of_buffer(&d.observations);
        if (rows != NULL && observations != NULL) {
            result = Py_BuildValue("(OOnO)", resources, rows, d.count, observations);
        }
        Py_XDECREF(rows);
        Py_XDECREF(observations);
        if (result == NULL) status = FAILED;
    }
done:
    PyBuffer_Release(&view);
    PyMem_Free(json.data);
    direct_free(&d);
    raw_span_free(&raw);
    PyMem_Free(sel.keys);
    PyMem_Free(sel.key_lengths);
    PyMem_Free(sel.prefixes);
    PyMem_Free(sel.prefix_lengths);
    Py_XDECREF(resources);
    if (status == OK) return result;
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
    Py_ssize_t columns;
    if (!PyArg_ParseTuple(args, "O!s#", &PyList_Type, &rows, &kinds, &columns)) return NULL;
    if (columns > 0x7FFF) return PyErr_Format(PyExc_ValueError, "too many columns");
    Buffer b = {0};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != columns) {
            PyErr_Format(PyExc_ValueError, "row %zd is not a tuple of %zd values", i, columns);
            goto failed;
        }
        if (put_columns(&b, (int)columns) < 0) goto failed;
        for (Py_ssize_t c = 0; c < columns; c++) {
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

/* ---- span rows ------------------------------------------------------------------------ */


/* An unsigned 64-bit integer from a Python int; 0 with *ok cleared if it is not one. */
static uint64_t as_u64(PyObject *value, int *ok) {
    if (!PyLong_Check(value)) {
        *ok = 0;
        return 0;
    }
    uint64_t number = PyLong_AsUnsignedLongLong(value);
    if (number == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        *ok = 0;
    }
    return number;
}

static int is_id(PyObject *value, Py_ssize_t size) {
    if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) != size) return 0;
    const char *data = PyBytes_AS_STRING(value);
    for (Py_ssize_t i = 0; i < size; i++) {
        if (data[i]) return 1;
    }
    return 0; /* all zero: invalid */
}

static int in_range(PyObject *value, long low, long high) {
    if (!PyLong_CheckExact(value)) return 0;
    int overflow;
    long number = PyLong_AsLongAndOverflow(value, &overflow);
    return !overflow && number >= low && number <= high;
}

/* 1 if `text` is a str without NUL characters (PostgreSQL text cannot hold them). */
static int plain_text(PyObject *text) {
    return PyUnicode_Check(text) &&
           PyUnicode_FindChar(text, 0, 0, PyUnicode_GET_LENGTH(text), 1) == -1;
}

/* mapping.first_value over {**readable, **attrs}: the value of the first of `keys` that is
 * there and not None; sets *found to it (borrowed) or NULL. -1 with an exception on failure. */
static int first_value(PyObject *attrs, PyObject *readable, PyObject *keys, PyObject **found) {
    *found = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(keys); i++) {
        PyObject *key = PyTuple_GET_ITEM(keys, i);
        PyObject *value = PyDict_GetItemWithError(attrs, key);
        if (value == NULL) {
            if (PyErr_Occurred()) return -1;
            value = PyDict_GetItemWithError(readable, key);
            if (value == NULL && PyErr_Occurred()) return -1;
        }
        if (value != NULL && value != Py_None) {
            *found = value;
            return 0;
        }
    }
    return 0;
}

/* str(value) when it holds no NUL character (as clean_text would leave it): 1 with a new
 * reference in *out; 0 when it holds one (the Python path cleans it); -1 on failure. */
static int text_of(PyObject *value, PyObject **out) {
    *out = PyObject_Str(value);
    if (*out == NULL) return -1;
    if (plain_text(*out)) return 1;
    Py_CLEAR(*out);
    return 0;
}

/* The correlation ID as Observer.correlation_id finds it in {**readable, **attrs}: a new
 * reference; NULL with no exception set when the span needs the Python path (NUL
 * characters); NULL with one set on failure. */
static PyObject *correlation_of(PyObject *attrs, PyObject *readable, PyObject *keys,
                                PyObject *trace_id) {
    PyObject *value, *text;
    if (first_value(attrs, readable, keys, &value) < 0) return NULL;
    if (value != NULL) {
        int plain = text_of(value, &text);
        if (plain <= 0) return NULL;
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        if (length > MAX_CORRELATION) {
            Py_SETREF(text, PyUnicode_Substring(text, 0, MAX_CORRELATION));
            return text;
        }
        if (length > 0) return text;
        Py_DECREF(text); /* an empty ID: the trace ID stands in */
    }
    return PyObject_CallMethod(trace_id, "hex", NULL);
}

/* Observer._business: the business fields `attrs` report, as binary jsonb made by `jsonb`.
 * A new reference; NULL with no exception set when a value needs the Python path. */
static PyObject *business_of(PyObject *attrs, PyObject *readable, PyObject *fields,
                             PyObject *jsonb) {
    PyObject *found = PyDict_New();
    if (found == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        PyObject *field = PyTuple_GET_ITEM(fields, i); /* (name, keys, is_amount) */
        PyObject *value, *stored;
        if (first_value(attrs, readable, PyTuple_GET_ITEM(field, 1), &value) < 0) goto failed;
        if (value == NULL) continue;
        if (PyTuple_GET_ITEM(field, 2) == Py_True) {
            stored = PyNumber_Float(value);
            if (stored == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_TypeError) &&
                    !PyErr_ExceptionMatches(PyExc_ValueError)) {
                    goto failed;
                }
                PyErr_Clear(); /* not a number: kept in the raw attributes only */
                continue;
            }
            if (!(fabs(PyFloat_AS_DOUBLE(stored)) < AMOUNT_LIMIT)) {
                Py_DECREF(stored);
                continue;
            }
        } else {
            int plain = text_of(value, &stored);
            if (plain <= 0) goto failed;
        }
        int set = PyDict_SetItem(found, PyTuple_GET_ITEM(field, 0), stored);
        Py_DECREF(stored);
        if (set < 0) goto failed;
    }
    PyObject *document = PyObject_CallOneArg(jsonb, found);
    Py_DECREF(found);
    return document;

failed:
    Py_DECREF(found);
    return NULL;
}

/* The error text Observer.observe reads from the first of `keys` in the attributes, as
 * _as_text would make it: 1 with a new reference in *out (NULL when absent), 0 when it holds
 * a NUL character (the Python path cleans it), -1 on failure. */
static int error_text_of(PyObject *attrs, PyObject *readable, PyObject *keys, PyObject **out) {
    PyObject *value;
    *out = NULL;
    if (first_value(attrs, readable, keys, &value) < 0) return -1;
    return value == NULL ? 1 : text_of(value, out);
}

/* The observation Observer.observe makes of a span whose stage is `stage_value`, with no
 * events (see span_rows): 1 with a new reference in *out, 0 when the span needs the Python
 * path, -1 on failure. `spec` is Observer.compiled. */
static int observation_of(PyObject *span, PyObject *attrs, PyObject *readable,
                          PyObject *service, PyObject *correlation, PyObject *stage_value,
                          PyObject *spec, PyObject **out) {
    PyObject *process_keys = PyTuple_GET_ITEM(spec, SPEC_PROCESS),
             *system_keys = PyTuple_GET_ITEM(spec, SPEC_SYSTEM),
             *python_keys = PyTuple_GET_ITEM(spec, SPEC_PYTHON),
             *fields = PyTuple_GET_ITEM(spec, SPEC_BUSINESS),
             *jsonb = PyTuple_GET_ITEM(spec, SPEC_JSONB),
             *error_type_keys = PyTuple_GET_ITEM(spec, SPEC_ERROR_TYPE),
             *error_message_keys = PyTuple_GET_ITEM(spec, SPEC_ERROR_MESSAGE),
             *failure = PyTuple_GET_ITEM(spec, SPEC_FAILURE);
    PyObject *trace_id = PyTuple_GET_ITEM(span, 0), *span_id = PyTuple_GET_ITEM(span, 1),
             *status_message = PyTuple_GET_ITEM(span, 11);
    PyObject *process_value, *system_value, *other;
    int failed = PyLong_AsLong(PyTuple_GET_ITEM(span, 10)) == STATUS_ERROR;
    *out = NULL;
    if (first_value(attrs, readable, python_keys, &other) < 0 ||
        first_value(attrs, readable, process_keys, &process_value) < 0 ||
        first_value(attrs, readable, system_keys, &system_value) < 0) {
        return -1;
    }
    if (other != NULL || process_value == NULL) return 0; /* a status or dead letter: Python */
    PyObject *process = NULL, *stage = NULL, *system = NULL, *business = NULL, *key = NULL,
             *error_type = NULL, *message = NULL, *fp = NULL;
    int outcome = text_of(process_value, &process);
    if (outcome > 0) outcome = text_of(stage_value, &stage);
    if (outcome > 0) {
        int given = system_value == NULL ? 0 : PyObject_IsTrue(system_value);
        if (given < 0) {
            outcome = -1;
        } else if (given) {
            outcome = text_of(system_value, &system);
        } else {
            system = Py_NewRef(service);
        }
    }
    if (outcome > 0) outcome = error_text_of(attrs, readable, error_type_keys, &error_type);
    if (outcome > 0) outcome = error_text_of(attrs, readable, error_message_keys, &message);
    if (outcome > 0 && (message == NULL || PyUnicode_GET_LENGTH(message) == 0)) {
        /* an empty error message attribute gives way to the status message, if any */
        Py_XSETREF(message, PyUnicode_GET_LENGTH(status_message) ? Py_NewRef(status_message)
                                                                  : NULL);
    }
    if (outcome > 0 && failed) { /* observations.failure: type and message as kept, and fp */
        PyObject *kept = PyObject_CallFunctionObjArgs(
            failure, process, stage, system, error_type ? error_type : Py_None,
            message ? message : Py_None, NULL);
        if (kept == NULL || !PyTuple_CheckExact(kept) || PyTuple_GET_SIZE(kept) != 3) {
            if (kept != NULL) PyErr_SetString(PyExc_TypeError, "failure must return 3 values");
            outcome = -1;
        } else {
            Py_XSETREF(error_type, Py_NewRef(PyTuple_GET_ITEM(kept, 0)));
            Py_XSETREF(message, Py_NewRef(PyTuple_GET_ITEM(kept, 1)));
            fp = Py_NewRef(PyTuple_GET_ITEM(kept, 2));
        }
        Py_XDECREF(kept);
    }
    if (outcome > 0) {
        business = business_of(attrs, readable, fields, jsonb);
        if (business == NULL) outcome = PyErr_Occurred() ? -1 : 0;
    }
    if (outcome > 0) {
        key = PyBytes_FromStringAndSize(NULL, 24);
        if (key == NULL) {
            outcome = -1;
        } else {
            memcpy(PyBytes_AS_STRING(key), PyBytes_AS_STRING(trace_id), 16);
            memcpy(PyBytes_AS_STRING(key) + 16, PyBytes_AS_STRING(span_id), 8);
            *out = PyTuple_Pack(14, key, correlation, process, stage, system,
                                PyTuple_GET_ITEM(span, 6), failed ? Py_False : Py_True,
                                business, error_type ? error_type : Py_None,
                                message ? message : Py_None, fp ? fp : Py_None, Py_False,
                                trace_id, span_id);
            if (*out == NULL) outcome = -1;
        }
    }
    Py_XDECREF(process);
    Py_XDECREF(stage);
    Py_XDECREF(system);
    Py_XDECREF(business);
    Py_XDECREF(key);
    Py_XDECREF(error_type);
    Py_XDECREF(message);
    Py_XDECREF(fp);
    return outcome;
}

/* The row of a span of the common shape, and its observation when it names a stage (see
 * span_rows): NULL with no exception set when it needs the Python path, NULL with one set
 * on failure. */
static PyObject *span_row(PyObject *span, PyObject *readable, PyObject *service,
                          PyObject *res_key, PyObject *correlation_keys, PyObject *spec,
                          uint64_t earliest, uint64_t latest, uint64_t *day,
                          PyObject **observation) {
    *observation = NULL;
    if (!PyTuple_CheckExact(span) || PyTuple_GET_SIZE(span) != 12) return NULL;
    PyObject *trace_id = PyTuple_GET_ITEM(span, 0), *span_id = PyTuple_GET_ITEM(span, 1),
             *parent = PyTuple_GET_ITEM(span, 2), *name = PyTuple_GET_ITEM(span, 3),
             *kind = PyTuple_GET_ITEM(span, 4), *attrs = PyTuple_GET_ITEM(span, 7),
             *attrs_jsonb = PyTuple_GET_ITEM(span, 8), *events = PyTuple_GET_ITEM(span, 9),
             *status_code = PyTuple_GET_ITEM(span, 10),
             *status_message = PyTuple_GET_ITEM(span, 11);
    int ok = 1;
    uint64_t start = as_u64(PyTuple_GET_ITEM(span, 5), &ok);
    uint64_t end = as_u64(PyTuple_GET_ITEM(span, 6), &ok);
    if (!ok || !is_id(trace_id, 16) || !is_id(span_id, 8) || !PyBytes_CheckExact(parent) ||
        (PyBytes_GET_SIZE(parent) != 0 && PyBytes_GET_SIZE(parent) != 8) || end < start ||
        !in_range(kind, 0, 5) || !in_range(status_code, 0, 2) || start < earliest ||
        start > latest || !PyList_CheckExact(events) || PyList_GET_SIZE(events) != 0 ||
        !PyDict_CheckExact(attrs) || !plain_text(name) || !plain_text(status_message)) {
        return NULL;
    }
    PyObject *stage; /* Observer.observe observes a record naming a stage, no other */
    if (first_value(attrs, readable, PyTuple_GET_ITEM(spec, SPEC_STAGE), &stage) < 0) return NULL;
    PyObject *correlation = correlation_of(attrs, readable, correlation_keys, trace_id);
    if (correlation == NULL) return NULL;
    if (stage != NULL && observation_of(span, attrs, readable, service, correlation, stage,
                                        spec, observation) <= 0) {
        Py_DECREF(correlation);
        return NULL;
    }
    PyObject *start_us = PyLong_FromLongLong((long long)(start / 1000) - PG_EPOCH_US);
    PyObject *end_us = PyLong_FromLongLong((long long)(end / 1000) - PG_EPOCH_US);
    PyObject *row = NULL;
    if (start_us != NULL && end_us != NULL) {
        row = PyTuple_Pack(
            14, correlation, trace_id, span_id, start_us, end_us,
            PyBytes_GET_SIZE(parent) ? parent : Py_None, name, kind, status_code,
            PyUnicode_GET_LENGTH(status_message) ? status_message : Py_None, service, res_key,
            attrs_jsonb, Py_None);
    }
    Py_DECREF(correlation);
    Py_XDECREF(start_us);
    Py_XDECREF(end_us);
    if (row == NULL) Py_CLEAR(*observation);
    *day = start / NS_PER_DAY;
    return row;
}

static PyObject *span_rows(PyObject *Py_UNUSED(module), PyObject *args) {
    PyObject *spans, *readable, *service, *res_key, *correlation_keys, *spec, *rows,
        *observations, *days;
    unsigned long long earliest, latest;
    if (!PyArg_ParseTuple(args, "O!O!OOO!O!KKO!O!O!", &PyList_Type, &spans, &PyDict_Type,
                          &readable, &service, &res_key, &PyTuple_Type, &correlation_keys,
                          &PyTuple_Type, &spec, &earliest, &latest, &PyList_Type, &rows,
                          &PyList_Type, &observations, &PySet_Type, &days)) {
        return NULL;
    }
    if (check_spec(spec) < 0) return NULL;
    PyObject *rest = PyList_New(0);
    if (rest == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        PyObject *span = PyList_GET_ITEM(spans, i), *observation;
        uint64_t day = 0;
        PyObject *row = span_row(span, readable, service, res_key, correlation_keys, spec,
                                 earliest, latest, &day, &observation);
        if (row == NULL) {
            if (PyErr_Occurred() || PyList_Append(rest, span) < 0) goto failed;
            continue;
        }
        PyObject *day_number = PyLong_FromUnsignedLongLong(day);
        int failed = day_number == NULL || PyList_Append(rows, row) < 0 ||
                     PySet_Add(days, day_number) < 0 ||
                     (observation != NULL && PyList_Append(observations, observation) < 0);
        Py_DECREF(row);
        Py_XDECREF(day_number);
        Py_XDECREF(observation);
        if (failed) goto failed;
    }
    return rest;

failed:
    Py_DECREF(rest);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_traces", read_traces, METH_VARARGS,
     "OTLP trace export protobuf -> (resources, span COPY rows, their count, observation "
     "COPY rows), or None to fall back."},
    {"copy_rows", copy_rows, METH_VARARGS,
     "Rows -> the tuples of a binary COPY, by column kinds (t, b, h, q, ?)."},
    {"span_rows", span_rows, METH_VARARGS,
     "Rows (and observations of stage spans) of the spans that need nothing "
     "else; returns the others, for the Python path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "collectors._wire",
    "Reads OTLP trace export protobuf into binary COPY rows or plain Python values.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&module); }
