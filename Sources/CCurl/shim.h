#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H
// libcurl, for the backend's mail over SMTP and a fleet's owners' app requests over HTTP.
// curl_easy_setopt is variadic, which Swift cannot call: one typed helper per kind of argument.
#include <curl/curl.h>

static inline CURLcode ccurl_set_string(CURL *c, CURLoption option, const char *value) {
    return curl_easy_setopt(c, option, value);
}
static inline CURLcode ccurl_set_long(CURL *c, CURLoption option, long value) {
    return curl_easy_setopt(c, option, value);
}
static inline CURLcode ccurl_set_pointer(CURL *c, CURLoption option, void *value) {
    return curl_easy_setopt(c, option, value);
}
static inline CURLcode ccurl_set_list(CURL *c, CURLoption option, struct curl_slist *list) {
    return curl_easy_setopt(c, option, list);
}
typedef size_t (*ccurl_read_fn)(char *buffer, size_t size, size_t count, void *context);
static inline CURLcode ccurl_set_reader(CURL *c, ccurl_read_fn reader, void *context) {
    CURLcode rc = curl_easy_setopt(c, CURLOPT_READFUNCTION, reader);
    return rc != CURLE_OK ? rc : curl_easy_setopt(c, CURLOPT_READDATA, context);
}
typedef size_t (*ccurl_write_fn)(char *data, size_t size, size_t count, void *context);
static inline CURLcode ccurl_set_writer(CURL *c, ccurl_write_fn writer, void *context) {
    CURLcode rc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, writer);
    return rc != CURLE_OK ? rc : curl_easy_setopt(c, CURLOPT_WRITEDATA, context);
}
static inline CURLcode ccurl_response_code(CURL *c, long *code) {
    return curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
}
#endif
