/* tessera text: the tokenizers (CLIP byte-level BPE, BERT WordPiece,
 * GPT-2 style byte-level BPE for Whisper).
 *
 *   tsr_error err = {0};
 *   tsr_tokenizer *tok = NULL;
 *   if (tsr_tokenizer_load_dir(model_dir, &tok, &err) != TSR_OK)
 *       return fprintf(stderr, "%s\n", err.msg), 1;
 *   int ids[77], n = 0, cut = 0;
 *   tsr_tokenizer_encode(tok, "a photo of a cat", 77, ids, &n, &cut, &err);
 *   printf("%d tokens, first %d, last %d\n", n, ids[0], ids[n - 1]);
 *   tsr_tokenizer_free(tok);
 *
 * The CLIP tokenizer matches HF CLIPTokenizerFast: NFC, whitespace runs to
 * one space, lowercase, CLIP's pre-tokenizer regex, byte-level BPE with
 * "</w>" word ends. Every tokenizer loads from a directory or from the
 * bytes of its files in memory (name is used in messages).
 *
 * Threads: a loaded tokenizer is read-only; its encode and decode functions
 * may run in any number of threads at once. Loading and freeing: one thread.
 */
#ifndef TSR_TEXT_H
#define TSR_TEXT_H

#include <stddef.h>

#include "tsr_opencl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tsr_tokenizer tsr_tokenizer;

/* Reads DIR/tokenizer.json, or DIR/vocab.json + DIR/merges.txt. */
tsr_status tsr_tokenizer_load_dir(const char *dir, tsr_tokenizer **out, tsr_error *err);
tsr_status tsr_tokenizer_load_files(const char *vocab_json, const char *merges_txt,
                                    tsr_tokenizer **out, tsr_error *err);
/* From memory: a tokenizer.json, or vocab.json and merges.txt. The names
 * (file paths, usually) are what error messages call each text. */
tsr_status tsr_tokenizer_load_json(const char *json, size_t len, const char *name,
                                   tsr_tokenizer **out, tsr_error *err);
tsr_status tsr_tokenizer_load_vocab_merges(const char *vocab_json, size_t vocab_len,
                                           const char *vocab_name, const char *merges_txt,
                                           size_t merges_len, const char *merges_name,
                                           tsr_tokenizer **out, tsr_error *err);
void tsr_tokenizer_free(tsr_tokenizer *tok);

/* Encodes UTF-8 text with start and end tokens into at most max_len ids
 * (max_len >= 2). *truncated is set when content was cut. Invalid UTF-8 is
 * an error. */
tsr_status tsr_tokenizer_encode(const tsr_tokenizer *tok, const char *text, int max_len, int *ids,
                                int *n, int *truncated, tsr_error *err);
/* ids as malloc'd UTF-8 text, as open_clip's SimpleTokenizer.decode: the
 * pieces' bytes, invalid UTF-8 replaced by U+FFFD, "</w>" as a space (the
 * special tokens spelled as the tokenizer's mode spells them). */
tsr_status tsr_tokenizer_decode(const tsr_tokenizer *tok, const int *ids, int n, char **out,
                                tsr_error *err);
/* Python's str.strip() on UTF-8 text, in place. */
void tsr_text_strip(char *s);
int tsr_tokenizer_bos(const tsr_tokenizer *tok);
int tsr_tokenizer_eos(const tsr_tokenizer *tok);
int tsr_tokenizer_pad(const tsr_tokenizer *tok);
int tsr_tokenizer_vocab_size(const tsr_tokenizer *tok);
/* on 1: encode as open_clip's SimpleTokenizer instead of CLIPTokenizerFast:
 * the text cleaned as open_clip cleans it (ftfy.fix_text without its mojibake
 * repair, html.unescape twice, strip, whitespace runs to one space, Python's
 * lower()), and "<start_of_text>" / "<end_of_text>" typed in the text are the
 * special tokens, matched where its regex reaches them. */
void tsr_tokenizer_set_openclip(tsr_tokenizer *tok, int on);

/* ---- BERT WordPiece (sentence-transformers models) ----
 * Matches HF BertTokenizerFast: BertNormalizer (clean, CJK spacing, accents
 * stripped and lowercase when configured), whitespace and punctuation
 * splitting, greedy longest-match word pieces, [CLS] ... [SEP]. Added tokens
 * such as "[MASK]" typed in the text are matched as themselves. */

typedef struct tsr_wordpiece tsr_wordpiece;

/* Reads DIR/tokenizer.json (model.type WordPiece), or DIR/vocab.txt with
 * DIR/tokenizer_config.json's do_lower_case. */
tsr_status tsr_wordpiece_load_dir(const char *dir, tsr_wordpiece **out, tsr_error *err);
/* From memory: a tokenizer.json, or a vocab.txt with its tokenizer_config.json
 * (config_json may be NULL). The names are what error messages call each text. */
tsr_status tsr_wordpiece_load_json(const char *json, size_t len, const char *name,
                                   tsr_wordpiece **out, tsr_error *err);
tsr_status tsr_wordpiece_load_vocab(const char *vocab_txt, size_t len, const char *vocab_name,
                                    const char *config_json, size_t config_len,
                                    const char *config_name, tsr_wordpiece **out,
                                    tsr_error *err);
void tsr_wordpiece_free(tsr_wordpiece *w);
/* Encodes text as [CLS] pieces [SEP] into at most max_len ids (max_len >= 2). */
tsr_status tsr_wordpiece_encode(const tsr_wordpiece *w, const char *text, int max_len, int *ids,
                                int *n, int *truncated, tsr_error *err);
int tsr_wordpiece_vocab_size(const tsr_wordpiece *w);
int tsr_wordpiece_pad(const tsr_wordpiece *w);
/* One past the highest id, added tokens included. */
int tsr_wordpiece_size(const tsr_wordpiece *w);
/* The id of a token (added tokens such as "[DEC]" first), or -1. */
int tsr_wordpiece_id(const tsr_wordpiece *w, const char *token);
/* ids as malloc'd text, as HF BertTokenizerFast.decode: special tokens
 * skipped when skip_special, pieces joined by tokenizers' WordPiece decoder
 * ("##" joins, its cleanup of " ." and the like when tokenizer.json asks),
 * then transformers' clean_up_tokenization when clean_up_spaces. Ids
 * without a token are left out. */
tsr_status tsr_wordpiece_decode(const tsr_wordpiece *w, const int *ids, int n, int skip_special,
                                int clean_up_spaces, char **out, tsr_error *err);

/* ---- GPT-2 style byte-level BPE (Whisper) ----
 * Encoding matches HF tokenizers' Tokenizer.encode(text,
 * add_special_tokens=False).ids, which faster-whisper's Tokenizer.encode
 * returns: added tokens found in the text first (leftmost-longest, with
 * their single_word, lstrip, rstrip and normalized flags), then the
 * ByteLevel pre-tokenizer (prefix space, GPT-2's regex), then the merges by
 * rank (model.ignore_merges honoured). */

typedef struct tsr_bytelevel tsr_bytelevel;

/* Reads a byte-level BPE tokenizer.json: the vocabulary, added tokens,
 * model.merges ("a b" strings or ["a", "b"] pairs) and the settings of the
 * model and pre-tokenizer. A file whose settings tessera does not implement
 * for encoding (a normalizer, BPE dropout, subword affixes, no merges) still
 * loads and decodes; encoding it fails with TSR_ERR_UNSUPPORTED. */
tsr_status tsr_bytelevel_load(const char *tokenizer_json, tsr_bytelevel **out, tsr_error *err);
tsr_status tsr_bytelevel_load_json(const char *json, size_t len, const char *name,
                                   tsr_bytelevel **out, tsr_error *err);
void tsr_bytelevel_free(tsr_bytelevel *b);
/* One past the highest token id. */
int tsr_bytelevel_size(const tsr_bytelevel *b);
/* The id of a token string ("<|endoftext|>"), or -1. */
int tsr_bytelevel_id(const tsr_bytelevel *b, const char *token);
/* Encodes UTF-8 text (no start or end tokens added). *n is the number of
 * ids the text needs; the first cap of them go to ids. More than cap is
 * TSR_ERR_TOO_LARGE, with *n still set; ids = NULL only counts. Invalid
 * UTF-8 is TSR_ERR_INVALID_ARG naming the offset; a byte the vocabulary has
 * no token for (a broken tokenizer.json) is TSR_ERR_FORMAT. */
tsr_status tsr_bytelevel_encode(const tsr_bytelevel *b, const char *text, int *ids, int cap,
                                int *n, tsr_error *err);
/* RoBERTa's encoding (RobertaTokenizerFast with truncation to max_len):
 * <s> ids </s>, keeping the first max_len - 2 ids of the text. *truncated
 * is 1 when some were dropped. The tokenizer must have <s> and </s>. */
tsr_status tsr_roberta_encode(const tsr_bytelevel *b, const char *text, int max_len, int *ids,
                              int *n, int *truncated, tsr_error *err);
/* Joins the bytes of ids (special tokens skipped) into malloc'd UTF-8 text;
 * invalid byte sequences become U+FFFD, as HF tokenizers' decode does. */
tsr_status tsr_bytelevel_decode(const tsr_bytelevel *b, const int *ids, int n, char **out,
                                tsr_error *err);

/* 1 when s[0..n) is valid UTF-8; otherwise 0 and *bad_offset (if given) is
 * the offset of the first bad byte. */
int tsr_utf8_valid(const char *s, size_t n, size_t *bad_offset);
/* A NUL-terminated copy of s[0..n) with each maximal invalid UTF-8 sequence
 * replaced by U+FFFD (Rust's String::from_utf8_lossy); NULL when out of memory. */
char *tsr_utf8_lossy(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
