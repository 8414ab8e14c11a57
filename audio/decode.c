/* Audio decoding with libavformat, libavcodec and libswresample: a streaming
 * reader that holds one decoded frame at a time, and the whole-file loader
 * built on it. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsr_audio.h"
#include "tsr_audio_internal.h"


#ifdef TSR_NO_FFMPEG /* built with -DTESSERA_WITH_FFMPEG=OFF */

tsr_status tsr_audio_open(const char *path, int rate, tsr_audio_reader **out, tsr_error *err)
{
    (void)rate;
    *out = NULL;
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "%s: this tessera was built without FFmpeg (TESSERA_WITH_FFMPEG=OFF), "
                         "so it reads no audio files", path ? shown(path) : "(null)");
}

tsr_status tsr_audio_read_s16(tsr_audio_reader *r, int16_t *buf, size_t cap, size_t *got,
                              tsr_error *err)
{
    *got = 0;
    return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio reader");
}

double tsr_audio_duration(const tsr_audio_reader *r) { return -1; }

void tsr_audio_close(tsr_audio_reader *r) { (void)r; }

#else
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/channel_layout.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libswresample/swresample.h>

/* The most samples one decoded frame may turn into (a codec's frames are far
 * smaller; this bounds what a crafted header can make the reader allocate). */
#define MAX_FRAME_OUT (1 << 24)

enum { READING, DRAINING, DONE };

struct tsr_audio_reader {
    char *path;                /* as given ("-" for standard input) */
    int rate, si, stage;
    AVFormatContext *fmt;
    AVIOContext *pb;           /* standard input's, read as FFmpeg's file protocol reads */
    long long stdin_base;      /* where standard input was when opened, if a regular file */
    AVCodecContext *dec;
    SwrContext *swr;           /* made from the first decoded frame */
    AVChannelLayout in_layout; /* what swr converts from */
    int in_format, in_rate;
    AVPacket *pkt;
    AVFrame *frame;
    int16_t *buf;              /* one frame's converted samples: buf[pos, len) not yet read */
    size_t cap, pos, len;
    uint64_t produced;         /* samples returned so far */
    int bad_packets;
    tsr_error failed;          /* a reader that failed keeps failing, with this error */
};

static tsr_status av_fail(tsr_error *err, const char *path, const char *what, int e)
{
    char msg[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(e, msg, sizeof msg);
    return tsr_error_set(err, TSR_ERR_FORMAT, "%s: %s (%s)", shown(path), what, msg);
}

/* Whether FFmpeg would take path for a URL ("http://...", "concat:a|b",
 * "subfile,,...:x") rather than a file name; sets *file when the scheme is
 * "file:". Follows libavformat's url_find_protocol. */
static int looks_like_url(const char *path, int *file)
{
    size_t k = 0;
    while (path[k] && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.",
                             path[k]))
        k++;
    *file = k == 4 && strncmp(path, "file", 4) == 0;
    return path[k] == ':' || strncmp(path, "subfile,", 8) == 0;
}

/* Standard input through an AVIOContext that behaves as FFmpeg's file
 * protocol does (which is what faster-whisper gets for a file): the pipe
 * protocol does not report a size, and the MP3 demuxer then keeps the
 * encoder's end padding. A regular file is seekable, relative to where
 * standard input stood; a pipe is not, and its size reads as 0. */
static int stdin_read(void *opaque, uint8_t *buf, int size)
{
    for (;;) {
        ssize_t k = read(0, buf, (size_t)size);
        if (k < 0 && errno == EINTR)
            continue;
        return k < 0 ? AVERROR(errno) : k == 0 ? AVERROR_EOF : (int)k;
    }
}

static int64_t stdin_seek(void *opaque, int64_t pos, int whence)
{
    const tsr_audio_reader *r = opaque;
    struct stat sb;
    if (whence == AVSEEK_SIZE) {
        if (fstat(0, &sb) != 0)
            return AVERROR(errno);
        return S_ISFIFO(sb.st_mode) ? 0 : sb.st_size - r->stdin_base;
    }
    whence &= ~AVSEEK_FORCE;
    off_t at = lseek(0, (off_t)(whence == SEEK_SET ? pos + r->stdin_base : pos), whence);
    return at < 0 ? AVERROR(errno) : (int64_t)at - r->stdin_base;
}

static int open_stdin(tsr_audio_reader *r, AVDictionary **opts)
{
    struct stat sb;
    int regular = fstat(0, &sb) == 0 && S_ISREG(sb.st_mode);
    off_t at = regular ? lseek(0, 0, SEEK_CUR) : -1;
    r->stdin_base = at > 0 ? (long long)at : 0;
    uint8_t *buf = av_malloc(32768);
    if (buf)
        r->pb = avio_alloc_context(buf, 32768, 0, r, stdin_read, NULL, stdin_seek);
    if (!r->pb) {
        av_free(buf);
        return AVERROR(ENOMEM);
    }
    r->pb->seekable = regular && at >= 0 ? AVIO_SEEKABLE_NORMAL : 0;
    if (!(r->fmt = avformat_alloc_context()))
        return AVERROR(ENOMEM);
    r->fmt->pb = r->pb;
    return avformat_open_input(&r->fmt, "", NULL, opts);
}

/* Opens the container and the decoder of its best audio stream. */
static tsr_status open_input(tsr_audio_reader *r, tsr_error *err)
{
    const char *path = r->path;
    char *url = NULL;
    int is_file = 0, e;
    struct stat sb;
    /* Only local files: nothing the container names (a playlist's entries, a
     * reference to another file) may reach the network. */
    AVDictionary *opts = NULL;
    if (av_dict_set(&opts, "protocol_whitelist", "file", 0) < 0)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    if (strcmp(path, "-") == 0) {
        e = open_stdin(r, &opts);
    } else {
        if (looks_like_url(path, &is_file) && stat(path, &sb) != 0) {
            if (!is_file) {
                av_dict_free(&opts);
                return tsr_error_set(err, TSR_ERR_INVALID_ARG,
                                     "%s: not a local file: tessera reads local files and "
                                     "standard input only, never URLs or FFmpeg protocols",
                                     path);
            }
            url = av_strdup(path);
        } else {
            url = av_asprintf("file:%s", path); /* a local name, even with a colon in it */
        }
        e = url ? avformat_open_input(&r->fmt, url, NULL, &opts) : AVERROR(ENOMEM);
        av_free(url);
    }
    av_dict_free(&opts);
    if (e == AVERROR(ENOMEM))
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    if (e < 0)
        return e == AVERROR(ENOENT) ? tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path)
                                    : av_fail(err, path, "not a readable audio or video file", e);
    if ((e = avformat_find_stream_info(r->fmt, NULL)) < 0)
        return av_fail(err, path, "cannot read the stream information", e);
    const AVCodec *codec = NULL;
    r->si = av_find_best_stream(r->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (r->si < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: no audio stream", shown(path));
    if (!codec)
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: no decoder for the audio codec",
                             shown(path));
    r->dec = avcodec_alloc_context3(codec);
    if (!r->dec || avcodec_parameters_to_context(r->dec, r->fmt->streams[r->si]->codecpar) < 0 ||
        avcodec_open2(r->dec, codec, NULL) < 0)
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: cannot open the %s decoder", shown(path),
                             codec->name);
    return TSR_OK;
}

/* The library never prints: FFmpeg's log goes quiet, once per process (the
 * level is FFmpeg's global; an application may raise it again). */
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;
static void quiet_ffmpeg(void) { av_log_set_level(AV_LOG_QUIET); }

tsr_status tsr_audio_open(const char *path, int rate, tsr_audio_reader **out, tsr_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio path given");
    if (rate < 1000 || rate > 384000)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "%s: sample rate %d outside 1000..384000",
                             shown(path), rate);
    pthread_once(&quiet_once, quiet_ffmpeg);
    tsr_audio_reader *r = calloc(1, sizeof *r);
    if (!r)
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    r->rate = rate;
    r->path = strdup(path);
    r->pkt = av_packet_alloc();
    r->frame = av_frame_alloc();
    tsr_status rc = !r->path || !r->pkt || !r->frame
                        ? tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path))
                        : open_input(r, err);
    if (rc != TSR_OK) {
        tsr_audio_close(r);
        return rc;
    }
    *out = r;
    return TSR_OK;
}

void tsr_audio_close(tsr_audio_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    swr_free(&r->swr);
    av_channel_layout_uninit(&r->in_layout);
    avcodec_free_context(&r->dec);
    avformat_close_input(&r->fmt); /* never closes standard input itself */
    if (r->pb)
        av_freep(&r->pb->buffer);
    avio_context_free(&r->pb);
    av_packet_free(&r->pkt);
    av_frame_free(&r->frame);
    free(r->path);
    free(r);
}

double tsr_audio_duration(const tsr_audio_reader *r)
{
    if (!r || !r->fmt)
        return -1;
    const AVStream *st = r->fmt->streams[r->si];
    if (st->duration > 0 && st->time_base.num > 0 && st->time_base.den > 0)
        return (double)st->duration * st->time_base.num / st->time_base.den;
    if (r->fmt->duration > 0)
        return (double)r->fmt->duration / AV_TIME_BASE;
    return -1;
}

/* Sets up the resampler from the first decoded frame, and refuses a frame
 * whose format differs from it (swr would read planes the frame lacks). */
static tsr_status check_resampler(tsr_audio_reader *r, const AVFrame *f, tsr_error *err)
{
    int channels = f->ch_layout.nb_channels > 0 ? f->ch_layout.nb_channels
                                                 : r->dec->ch_layout.nb_channels;
    if (r->swr) {
        if (f->format == r->in_format && f->sample_rate == r->in_rate &&
            channels == r->in_layout.nb_channels)
            return TSR_OK;
        return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                             "%s: the audio format changes mid-stream (%d channels at %d Hz, then "
                             "%d channels at %d Hz)",
                             shown(r->path), r->in_layout.nb_channels, r->in_rate, channels,
                             f->sample_rate);
    }
    if (f->ch_layout.nb_channels > 0)
        av_channel_layout_copy(&r->in_layout, &f->ch_layout);
    else
        av_channel_layout_default(&r->in_layout, channels);
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    r->in_format = f->format;
    r->in_rate = f->sample_rate;
    if (r->in_layout.nb_channels < 1 || f->sample_rate < 1 ||
        swr_alloc_set_opts2(&r->swr, &mono, AV_SAMPLE_FMT_S16, r->rate, &r->in_layout, f->format,
                            f->sample_rate, 0, NULL) < 0 ||
        swr_init(r->swr) < 0) {
        swr_free(&r->swr);
        return tsr_error_set(err, TSR_ERR_FORMAT, "%s: cannot convert %d-channel audio at %d Hz",
                             shown(r->path), r->in_layout.nb_channels, f->sample_rate);
    }
    return TSR_OK;
}

/* Converts one decoded frame (or flushes the resampler with f == NULL) into
 * r->buf, which is empty. */
static tsr_status convert(tsr_audio_reader *r, const AVFrame *f, tsr_error *err)
{
    int in = f ? f->nb_samples : 0;
    int cap = swr_get_out_samples(r->swr, in);
    if (cap < 0)
        return av_fail(err, r->path, "resampling failed", cap);
    if (cap > MAX_FRAME_OUT)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE,
                             "%s: a decoded frame of %d samples is larger than tessera takes",
                             shown(r->path), in);
    if ((size_t)cap + 1 > r->cap) {
        int16_t *p = realloc(r->buf, sizeof *p * ((size_t)cap + 1));
        if (!p)
            return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(r->path));
        r->buf = p;
        r->cap = (size_t)cap + 1;
    }
    uint8_t *outp = (uint8_t *)r->buf;
    int got = swr_convert(r->swr, &outp, cap, f ? (const uint8_t **)f->extended_data : NULL, in);
    if (got < 0)
        return av_fail(err, r->path, "resampling failed", got);
    r->pos = 0;
    r->len = (size_t)got;
    return TSR_OK;
}

/* One decoded frame, converted. */
static tsr_status take_frame(tsr_audio_reader *r, tsr_error *err)
{
    tsr_status rc = check_resampler(r, r->frame, err);
    if (rc == TSR_OK)
        rc = convert(r, r->frame, err);
    av_frame_unref(r->frame);
    return rc;
}

/* Decodes until some converted samples wait in r->buf, or the end. Corrupt
 * packets are skipped and a read error ends the stream, keeping what decoded,
 * as PyAV (and so faster-whisper) does. */
static tsr_status refill(tsr_audio_reader *r, tsr_error *err)
{
    tsr_status rc = TSR_OK;
    while (rc == TSR_OK && r->pos == r->len && r->stage != DONE) {
        int e = avcodec_receive_frame(r->dec, r->frame);
        if (e >= 0) {
            rc = take_frame(r, err);
            continue;
        }
        if (r->stage == DRAINING) { /* the decoder is empty: flush the resampler */
            r->stage = DONE;
            if (r->swr)
                rc = convert(r, NULL, err);
            continue;
        }
        if (e != AVERROR(EAGAIN) && e != AVERROR_EOF)
            r->bad_packets++;
        if ((e = av_read_frame(r->fmt, r->pkt)) < 0) {
            if (e != AVERROR_EOF)
                r->bad_packets++; /* a read error: a truncated file */
            avcodec_send_packet(r->dec, NULL);
            r->stage = DRAINING;
            continue;
        }
        if (r->pkt->stream_index == r->si && (e = avcodec_send_packet(r->dec, r->pkt)) < 0 &&
            e != AVERROR(EAGAIN))
            r->bad_packets++;
        av_packet_unref(r->pkt);
    }
    if (rc == TSR_OK && r->stage == DONE && r->pos == r->len && r->produced == 0 &&
        r->bad_packets)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: no decodable audio (the stream is corrupt)",
                           shown(r->path));
    return rc;
}

tsr_status tsr_audio_read_s16(tsr_audio_reader *r, int16_t *buf, size_t cap, size_t *got,
                              tsr_error *err)
{
    *got = 0;
    if (!r)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "no audio reader");
    if (r->failed.code != TSR_OK)
        return tsr_error_set(err, r->failed.code, "%s", r->failed.msg);
    while (*got < cap) {
        if (r->pos == r->len) {
            tsr_status rc = refill(r, &r->failed);
            if (rc != TSR_OK) {
                *got = 0;
                return tsr_error_set(err, rc, "%s", r->failed.msg);
            }
            if (r->pos == r->len)
                break; /* the end */
        }
        size_t k = r->len - r->pos < cap - *got ? r->len - r->pos : cap - *got;
        memcpy(buf + *got, r->buf + r->pos, sizeof *buf * k);
        r->pos += k;
        *got += k;
        r->produced += k;
    }
    return TSR_OK;
}

#endif /* TSR_NO_FFMPEG */

tsr_status tsr_audio_read(tsr_audio_reader *r, float *buf, size_t cap, size_t *got,
                          tsr_error *err)
{
    int16_t s[4096];
    *got = 0;
    while (*got < cap) {
        size_t want = cap - *got < 4096 ? cap - *got : 4096, k = 0;
        tsr_status rc = tsr_audio_read_s16(r, s, want, &k, err);
        if (rc != TSR_OK) {
            *got = 0;
            return rc;
        }
        for (size_t i = 0; i < k; i++)
            buf[*got + i] = (float)s[i] / 32768.0f;
        *got += k;
        if (k < want)
            break;
    }
    return TSR_OK;
}

tsr_status tsr_audio_load_file(const char *path, int rate, float **out, size_t *n,
                               tsr_error *err)
{
    *out = NULL;
    *n = 0;
    tsr_audio_reader *r = NULL;
    tsr_status rc = tsr_audio_open(path, rate, &r, err);
    if (rc != TSR_OK)
        return rc;
    int16_t *s = NULL;
    size_t len = 0, cap = 0, max = (size_t)TSR_AUDIO_MAX_SECONDS * (size_t)rate;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            int16_t *p = realloc(s, sizeof *p * nc);
            if (!p) {
                rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
                break;
            }
            s = p;
            cap = nc;
        }
        size_t got = 0;
        if ((rc = tsr_audio_read_s16(r, s + len, cap - len, &got, err)) != TSR_OK || got == 0)
            break;
        len += got;
        if (len > max) {
            rc = tsr_error_set(err, TSR_ERR_TOO_LARGE,
                               "%s: longer than %d seconds, the most tsr_audio_load_file holds "
                               "in memory (tsr_audio_open and tsr_audio_spool_open read any "
                               "length)",
                               shown(path), TSR_AUDIO_MAX_SECONDS);
            break;
        }
    }
    tsr_audio_close(r);
    if (rc == TSR_OK && len == 0)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: no decodable audio (the stream is empty)",
                           shown(path));
    float *f = rc == TSR_OK ? malloc(sizeof(float) * len) : NULL;
    if (rc == TSR_OK && !f)
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", shown(path));
    if (rc == TSR_OK) {
        for (size_t i = 0; i < len; i++)
            f[i] = (float)s[i] / 32768.0f;
        *out = f;
        *n = len;
    }
    free(s);
    return rc;
}

int tsr_audio_sniff(const unsigned char *h, size_t n)
{
#define AT(off, lit) (n >= (off) + sizeof(lit) - 1 && memcmp(h + (off), lit, sizeof(lit) - 1) == 0)
    if (AT(0, "RIFF") && (AT(8, "WAVE") || AT(8, "AVI ")))
        return 1;
    if (AT(0, "RF64") || AT(0, "fLaC") || AT(0, "OggS") || AT(0, "ID3") || AT(0, "caff") ||
        AT(0, ".snd") || AT(0, "wvpk") || AT(0, "#!AMR") || AT(0, "MAC ") ||
        AT(0, "\x1a\x45\xdf\xa3"))
        return 1;
    if (AT(0, "FORM") && (AT(8, "AIFF") || AT(8, "AIFC")))
        return 1;
    if (AT(4, "ftyp"))
        return 1;
    /* an MPEG audio frame or an ADTS header: 11 (12) sync bits */
    if (n >= 2 && h[0] == 0xFF && (h[1] & 0xE0) == 0xE0 && (h[1] & 0x18) != 0x08)
        return 1;
    return 0;
#undef AT
}
