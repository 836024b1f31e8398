/* The native fan-out loop (issue 29): for one incoming RTP packet, every viewer's header
 * rewrite, SRTP protect (libsrtp2: no crypto of our own) and send, in one call from Python,
 * with one sendmmsg for each run of viewers that share a socket.
 *
 *   Srtp(key, profile)        one viewer's outbound SRTP context, from the DTLS keying
 *                             material aiortc derived (media/native.py re-derives it)
 *   Srtp.protect(rtp) -> srtp  the same protection for a single packet (resends, keyframes)
 *   Track(srtp, fd, host, port)  one viewer's copy of one track: the rewrite (b0, pt, ssrc,
 *                             ext, seq_off, ts_off) and its counters (packets, octets, errors)
 *   fanout(tracks, marker, seq, ts, payload) -> sent
 *
 * No Python object is made per viewer per packet; the GIL is held throughout (the loop is
 * short and sendmmsg on a non-blocking socket does not wait). A viewer whose send fails is
 * counted in its errors and never stops the others.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <srtp2/srtp.h>

#define SLOT 1600 /* a packet's room: RTP header, extensions, payload, SRTP trailer */
#define MAX_EXT 256

/* -- Srtp ------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    srtp_t ctx;
} Srtp;

static void Srtp_dealloc(Srtp *self) {
    if (self->ctx) srtp_dealloc(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Srtp_init(Srtp *self, PyObject *args, PyObject *kwds) {
    Py_buffer key;
    int profile;
    if (!PyArg_ParseTuple(args, "y*i", &key, &profile)) return -1;
    srtp_policy_t policy;
    memset(&policy, 0, sizeof(policy));
    if (srtp_crypto_policy_set_from_profile_for_rtp(&policy.rtp, (srtp_profile_t)profile) ||
        srtp_crypto_policy_set_from_profile_for_rtcp(&policy.rtcp, (srtp_profile_t)profile)) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return -1;
    }
    unsigned int want = srtp_profile_get_master_key_length((srtp_profile_t)profile) +
                        srtp_profile_get_master_salt_length((srtp_profile_t)profile);
    if ((unsigned int)key.len != want) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "an SRTP key of this profile is %u bytes", want);
        return -1;
    }
    unsigned char material[64];
    memcpy(material, key.buf, key.len);
    PyBuffer_Release(&key);
    policy.ssrc.type = ssrc_any_outbound;
    policy.key = material;
    policy.window_size = 1024;
    policy.allow_repeat_tx = 1;
    policy.next = NULL;
    if (self->ctx) {
        srtp_dealloc(self->ctx);
        self->ctx = NULL;
    }
    srtp_err_status_t err = srtp_create(&self->ctx, &policy);
    memset(material, 0, sizeof(material));
    if (err) {
        self->ctx = NULL;
        PyErr_Format(PyExc_RuntimeError, "srtp_create failed (%d)", (int)err);
        return -1;
    }
    return 0;
}

static PyObject *Srtp_protect(Srtp *self, PyObject *arg) {
    if (!self->ctx) {
        PyErr_SetString(PyExc_RuntimeError, "this SRTP context was never set up");
        return NULL;
    }
    Py_buffer rtp;
    if (PyObject_GetBuffer(arg, &rtp, PyBUF_SIMPLE) < 0) return NULL;
    if (rtp.len < 12 || rtp.len > SLOT - SRTP_MAX_TRAILER_LEN) {
        PyBuffer_Release(&rtp);
        PyErr_SetString(PyExc_ValueError, "not an RTP packet of a size to protect");
        return NULL;
    }
    unsigned char buf[SLOT];
    int len = (int)rtp.len;
    memcpy(buf, rtp.buf, rtp.len);
    PyBuffer_Release(&rtp);
    srtp_err_status_t err = srtp_protect(self->ctx, buf, &len);
    if (err) {
        PyErr_Format(PyExc_RuntimeError, "srtp_protect failed (%d)", (int)err);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)buf, len);
}

static PyMethodDef Srtp_methods[] = {
    {"protect", (PyCFunction)Srtp_protect, METH_O, "SRTP-protect one RTP packet."},
    {NULL},
};

static PyTypeObject SrtpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Srtp",
    .tp_basicsize = sizeof(Srtp),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One viewer's outbound SRTP context (libsrtp2).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Srtp_init,
    .tp_dealloc = (destructor)Srtp_dealloc,
    .tp_methods = Srtp_methods,
};

/* -- Track ------------------------------------------------------------------------------ */
typedef struct {
    PyObject_HEAD
    Srtp *srtp;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int b0, pt;
    unsigned int ssrc, seq_off, ts_off;
    unsigned char ext[MAX_EXT];
    Py_ssize_t ext_len;
    unsigned long long packets, octets, errors;
} Track;

static void Track_dealloc(Track *self) {
    Py_XDECREF(self->srtp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int set_addr(Track *self, const char *host, int port) {
    memset(&self->addr, 0, sizeof(self->addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&self->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&self->addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        self->addrlen = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        self->addrlen = sizeof(*v6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
    return -1;
}

static int Track_init(Track *self, PyObject *args, PyObject *kwds) {
    PyObject *srtp;
    int fd, port;
    const char *host;
    if (!PyArg_ParseTuple(args, "O!isi", &SrtpType, &srtp, &fd, &host, &port)) return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    if (set_addr(self, host, port) < 0) return -1;
    Py_INCREF(srtp);
    Py_XSETREF(self->srtp, (Srtp *)srtp);
    self->fd = fd;
    self->b0 = 0x80;
    return 0;
}

static PyObject *Track_retarget(Track *self, PyObject *args) {
    const char *host;
    int fd, port;
    if (!PyArg_ParseTuple(args, "isi", &fd, &host, &port)) return NULL;
    if (set_addr(self, host, port) < 0) return NULL;
    self->fd = fd;
    Py_RETURN_NONE;
}

static PyObject *Track_get_ext(Track *self, void *closure) {
    return PyBytes_FromStringAndSize((const char *)self->ext, self->ext_len);
}

static int Track_set_ext(Track *self, PyObject *value, void *closure) {
    char *data;
    Py_ssize_t len;
    if (value == NULL || PyBytes_AsStringAndSize(value, &data, &len) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "ext is bytes");
        return -1;
    }
    if (len > MAX_EXT || len % 4) {
        PyErr_SetString(PyExc_ValueError, "ext is whole 32-bit words, at most 256 bytes");
        return -1;
    }
    memcpy(self->ext, data, len);
    self->ext_len = len;
    return 0;
}

static PyMemberDef Track_members[] = {
    {"b0", T_INT, offsetof(Track, b0), 0, "the first header byte (version, X bit)"},
    {"pt", T_INT, offsetof(Track, pt), 0, "payload type"},
    {"ssrc", T_UINT, offsetof(Track, ssrc), 0, "the viewer's SSRC"},
    {"seq_off", T_UINT, offsetof(Track, seq_off), 0, "added to the relay's sequence number"},
    {"ts_off", T_UINT, offsetof(Track, ts_off), 0, "added to the relay's timestamp"},
    {"fd", T_INT, offsetof(Track, fd), READONLY, "the socket it sends on"},
    {"packets", T_ULONGLONG, offsetof(Track, packets), 0, "RTP packets sent"},
    {"octets", T_ULONGLONG, offsetof(Track, octets), 0, "payload octets sent"},
    {"errors", T_ULONGLONG, offsetof(Track, errors), 0, "sends that failed"},
    {NULL},
};

static PyGetSetDef Track_getset[] = {
    {"ext", (getter)Track_get_ext, (setter)Track_set_ext, "header extension block", NULL},
    {NULL},
};

static PyMethodDef Track_methods[] = {
    {"retarget", (PyCFunction)Track_retarget, METH_VARARGS,
     "retarget(fd, host, port): ICE nominated another pair."},
    {NULL},
};

static PyTypeObject TrackType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "media._fanout.Track",
    .tp_basicsize = sizeof(Track),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One viewer's copy of one track, sent natively.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Track_init,
    .tp_dealloc = (destructor)Track_dealloc,
    .tp_members = Track_members,
    .tp_getset = Track_getset,
    .tp_methods = Track_methods,
};

/* -- fanout ----------------------------------------------------------------------------- */
static unsigned char *slots = NULL;
static struct mmsghdr *msgs = NULL;
static struct iovec *iovs = NULL;
static Track **owners = NULL;
static Py_ssize_t capacity = 0;

static int reserve(Py_ssize_t n) {
    if (n <= capacity) return 0;
    Py_ssize_t want = n < 64 ? 64 : n * 2;
    unsigned char *s = PyMem_Realloc(slots, (size_t)want * SLOT);
    if (!s) return -1;
    slots = s;
    struct mmsghdr *m = PyMem_Realloc(msgs, (size_t)want * sizeof(*m));
    if (!m) return -1;
    msgs = m;
    struct iovec *v = PyMem_Realloc(iovs, (size_t)want * sizeof(*v));
    if (!v) return -1;
    iovs = v;
    Track **o = PyMem_Realloc(owners, (size_t)want * sizeof(*o));
    if (!o) return -1;
    owners = o;
    capacity = want;
    return 0;
}

static PyObject *fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "fanout(tracks: list, marker, seq, ts, payload)");
        return NULL;
    }
    PyObject *tracks = args[0];
    int marker = PyObject_IsTrue(args[1]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[2]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[3]);
    if (marker < 0 || PyErr_Occurred()) return NULL;
    Py_buffer payload;
    if (PyObject_GetBuffer(args[4], &payload, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(tracks);
    if (reserve(n) < 0) {
        PyBuffer_Release(&payload);
        return PyErr_NoMemory();
    }
    int b1 = marker ? 0x80 : 0;
    Py_ssize_t ready = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(tracks, i);
        if (Py_TYPE(item) != &TrackType) continue;
        Track *t = (Track *)item;
        if (!t->srtp || !t->srtp->ctx) {
            t->errors++;
            continue;
        }
        int len = 12 + (int)t->ext_len + (int)payload.len;
        if (len > SLOT - SRTP_MAX_TRAILER_LEN) {
            t->errors++;
            continue;
        }
        unsigned char *p = slots + ready * SLOT;
        unsigned int rseq = (unsigned int)((seq + t->seq_off) & 0xFFFF);
        unsigned int rts = (unsigned int)((ts + t->ts_off) & 0xFFFFFFFFu);
        p[0] = (unsigned char)t->b0;
        p[1] = (unsigned char)(b1 | t->pt);
        p[2] = rseq >> 8;
        p[3] = rseq & 0xFF;
        p[4] = rts >> 24;
        p[5] = (rts >> 16) & 0xFF;
        p[6] = (rts >> 8) & 0xFF;
        p[7] = rts & 0xFF;
        p[8] = t->ssrc >> 24;
        p[9] = (t->ssrc >> 16) & 0xFF;
        p[10] = (t->ssrc >> 8) & 0xFF;
        p[11] = t->ssrc & 0xFF;
        memcpy(p + 12, t->ext, t->ext_len);
        memcpy(p + 12 + t->ext_len, payload.buf, payload.len);
        if (srtp_protect(t->srtp->ctx, p, &len) != srtp_err_status_ok) {
            t->errors++;
            continue;
        }
        iovs[ready].iov_base = p;
        iovs[ready].iov_len = (size_t)len;
        memset(&msgs[ready].msg_hdr, 0, sizeof(msgs[ready].msg_hdr));
        msgs[ready].msg_hdr.msg_name = &t->addr;
        msgs[ready].msg_hdr.msg_namelen = t->addrlen;
        msgs[ready].msg_hdr.msg_iov = &iovs[ready];
        msgs[ready].msg_hdr.msg_iovlen = 1;
        owners[ready] = t;
        ready++;
    }
    Py_ssize_t sent = 0;
    Py_ssize_t i = 0;
    while (i < ready) { /* one sendmmsg for each run of messages on the same socket */
        Py_ssize_t j = i + 1;
        while (j < ready && owners[j]->fd == owners[i]->fd) j++;
        Py_ssize_t k = i;
        while (k < j) {
            int done = sendmmsg(owners[i]->fd, msgs + k, (unsigned int)(j - k), MSG_DONTWAIT);
            if (done <= 0) { /* the first of the rest failed: count it, go on with the next */
                if (done < 0 && errno == EINTR) continue;
                owners[k]->errors++;
                k++;
                continue;
            }
            for (int m = 0; m < done; m++) {
                owners[k + m]->packets++;
                owners[k + m]->octets += (unsigned long long)payload.len;
            }
            sent += done;
            k += done;
        }
        i = j;
    }
    PyBuffer_Release(&payload);
    return PyLong_FromSsize_t(sent);
}

static PyMethodDef module_methods[] = {
    {"fanout", (PyCFunction)(void (*)(void))fanout, METH_FASTCALL,
     "fanout(tracks, marker, seq, ts, payload) -> packets sent"},
    {NULL},
};

static struct PyModuleDef fanout_module = {
    PyModuleDef_HEAD_INIT, "media._fanout", "The native fan-out loop (libsrtp2, sendmmsg).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (srtp_init() != srtp_err_status_ok) {
        PyErr_SetString(PyExc_ImportError, "libsrtp2 did not initialise");
        return NULL;
    }
    if (PyType_Ready(&SrtpType) < 0 || PyType_Ready(&TrackType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fanout_module);
    if (!m) return NULL;
    Py_INCREF(&SrtpType);
    Py_INCREF(&TrackType);
    if (PyModule_AddObject(m, "Srtp", (PyObject *)&SrtpType) < 0 ||
        PyModule_AddObject(m, "Track", (PyObject *)&TrackType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
