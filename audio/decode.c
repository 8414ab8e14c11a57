/* Audio decoding with libavformat, libavcodec and libswresample. */
#ifdef TSR_NO_FFMPEG /* built with -DTESSERA_WITH_FFMPEG=OFF */
#include "tsr_audio.h"

tsr_status tsr_audio_load_file(const char *path, int rate, float **out, size_t *n,
                               tsr_error *err)
{
    (void)rate;
    *out = NULL;
    *n = 0;
    return tsr_error_set(err, TSR_ERR_UNSUPPORTED,
                         "%s: this tessera was built without FFmpeg (TESSERA_WITH_FFMPEG=OFF), "
                         "so it reads no audio files", path);
}
#else
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsr_audio.h"

typedef struct {
    int16_t *s;
    size_t n, cap, max;
} pcm_buf;

static int pcm_reserve(pcm_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return 1;
    size_t nc = b->cap ? b->cap : 1 << 16;
    while (nc < b->n + extra)
        nc *= 2;
    int16_t *p = realloc(b->s, nc * sizeof *p);
    if (!p)
        return 0;
    b->s = p;
    b->cap = nc;
    return 1;
}

static tsr_status av_fail(tsr_error *err, const char *path, const char *what, int e)
{
    char msg[AV_ERROR_MAX_STRING_SIZE] = "";
    av_strerror(e, msg, sizeof msg);
    return tsr_error_set(err, TSR_ERR_FORMAT, "%s: %s (%s)", path, what, msg);
}

/* Converts one decoded frame (or flushes with frame == NULL) into b. */
static tsr_status convert(SwrContext *swr, const AVFrame *frame, pcm_buf *b, const char *path,
                          tsr_error *err)
{
    int in = frame ? frame->nb_samples : 0;
    int cap = swr_get_out_samples(swr, in);
    if (cap < 0)
        return av_fail(err, path, "resampling failed", cap);
    if (b->n + (size_t)cap > b->max)
        return tsr_error_set(err, TSR_ERR_TOO_LARGE, "%s: longer than %d seconds", path,
                             TSR_AUDIO_MAX_SECONDS);
    if (!pcm_reserve(b, (size_t)cap + 1))
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
    uint8_t *outp = (uint8_t *)(b->s + b->n);
    int got = swr_convert(swr, &outp, cap, frame ? (const uint8_t **)frame->extended_data : NULL,
                          in);
    if (got < 0)
        return av_fail(err, path, "resampling failed", got);
    b->n += (size_t)got;
    return TSR_OK;
}

tsr_status tsr_audio_load_file(const char *path, int rate, float **out, size_t *n,
                               tsr_error *err)
{
    *out = NULL;
    *n = 0;
    if (rate < 1000 || rate > 384000)
        return tsr_error_set(err, TSR_ERR_INVALID_ARG, "sample rate %d outside 1000..384000", rate);
    av_log_set_level(AV_LOG_QUIET);
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    SwrContext *swr = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    pcm_buf b = {.max = (size_t)TSR_AUDIO_MAX_SECONDS * rate};
    tsr_status rc = TSR_OK;
    int e, bad_packets = 0, frames_ok = 0;
    if (!pkt || !frame) {
        rc = tsr_error_set(err, TSR_ERR_NOMEM, "out of host memory");
        goto done;
    }
    if ((e = avformat_open_input(&fmt, path, NULL, NULL)) < 0) {
        rc = e == AVERROR(ENOENT) ? tsr_error_set(err, TSR_ERR_IO, "%s: cannot open", path)
                                  : av_fail(err, path, "not a readable audio or video file", e);
        goto done;
    }
    if ((e = avformat_find_stream_info(fmt, NULL)) < 0) {
        rc = av_fail(err, path, "cannot read the stream information", e);
        goto done;
    }
    const AVCodec *codec = NULL;
    int si = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (si < 0) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: no audio stream", path);
        goto done;
    }
    if (!codec) {
        rc = tsr_error_set(err, TSR_ERR_UNSUPPORTED, "%s: no decoder for the audio codec", path);
        goto done;
    }
    dec = avcodec_alloc_context3(codec);
    if (!dec || avcodec_parameters_to_context(dec, fmt->streams[si]->codecpar) < 0 ||
        (e = avcodec_open2(dec, codec, NULL)) < 0) {
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: cannot open the %s decoder", path,
                           codec->name);
        goto done;
    }
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    while (rc == TSR_OK && (e = av_read_frame(fmt, pkt)) >= 0) {
        if (pkt->stream_index != si) {
            av_packet_unref(pkt);
            continue;
        }
        e = avcodec_send_packet(dec, pkt);
        av_packet_unref(pkt);
        if (e < 0 && e != AVERROR(EAGAIN)) {
            bad_packets++; /* corrupt packets are skipped, as PyAV does */
            continue;
        }
        while (rc == TSR_OK && (e = avcodec_receive_frame(dec, frame)) >= 0) {
            if (!swr) {
                AVChannelLayout in_layout = {0}; /* copy() uninits its destination first */
                if (frame->ch_layout.nb_channels > 0)
                    av_channel_layout_copy(&in_layout, &frame->ch_layout);
                else
                    av_channel_layout_default(&in_layout, dec->ch_layout.nb_channels);
                if (in_layout.nb_channels < 1 || frame->sample_rate < 1 ||
                    swr_alloc_set_opts2(&swr, &mono, AV_SAMPLE_FMT_S16, rate, &in_layout,
                                        frame->format, frame->sample_rate, 0, NULL) < 0 ||
                    swr_init(swr) < 0)
                    rc = tsr_error_set(err, TSR_ERR_FORMAT,
                                       "%s: cannot convert %d-channel audio at %d Hz", path,
                                       in_layout.nb_channels, frame->sample_rate);
                av_channel_layout_uninit(&in_layout);
            }
            if (rc == TSR_OK)
                rc = convert(swr, frame, &b, path, err);
            frames_ok++;
            av_frame_unref(frame);
        }
        if (e < 0 && e != AVERROR(EAGAIN) && e != AVERROR_EOF)
            bad_packets++;
    }
    if (rc == TSR_OK && e < 0 && e != AVERROR_EOF)
        bad_packets++; /* a read error: truncated file; keep what decoded */
    if (rc == TSR_OK) { /* drain the decoder and the resampler */
        avcodec_send_packet(dec, NULL);
        while (rc == TSR_OK && avcodec_receive_frame(dec, frame) >= 0) {
            if (swr)
                rc = convert(swr, frame, &b, path, err);
            frames_ok++;
            av_frame_unref(frame);
        }
        if (rc == TSR_OK && swr)
            rc = convert(swr, NULL, &b, path, err);
    }
    if (rc == TSR_OK && b.n == 0)
        rc = tsr_error_set(err, TSR_ERR_FORMAT, "%s: no decodable audio%s", path,
                           bad_packets ? " (the stream is corrupt)" : " (the stream is empty)");
    if (rc == TSR_OK) {
        float *f = malloc(sizeof(float) * b.n);
        if (!f) {
            rc = tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of host memory", path);
        } else {
            for (size_t i = 0; i < b.n; i++)
                f[i] = (float)b.s[i] / 32768.0f;
            *out = f;
            *n = b.n;
        }
    }
done:
    free(b.s);
    swr_free(&swr);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    av_packet_free(&pkt);
    av_frame_free(&frame);
    return rc;
}
#endif /* TSR_NO_FFMPEG */
