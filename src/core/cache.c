/* The on-disk cache's directory, keys and the CPU's identity (cache.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "canopy/cache.h"

void cnp_cache_dir(const char *configured, char *out, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (configured && configured[0])
        snprintf(out, len, "%s", configured);
    else if (xdg && xdg[0])
        snprintf(out, len, "%s/canopy/kernels", xdg);
    else if (home && home[0])
        snprintf(out, len, "%s/.cache/canopy/kernels", home);
    else
        snprintf(out, len, "/tmp/canopy-kernels");
}

int cnp_mkdir_p(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

void cnp_cache_key(const char *const *parts, size_t nparts, const void *data, size_t len,
                   char hex[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    EVP_DigestInit_ex(h, EVP_sha256(), NULL);
    for (size_t i = 0; i < nparts; i++)
        EVP_DigestUpdate(h, parts[i], strlen(parts[i]) + 1);
    EVP_DigestUpdate(h, data, len);
    EVP_DigestFinal_ex(h, md, &md_len);
    EVP_MD_CTX_free(h);
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void cnp_cpu_identity(char *out, size_t len)
{
    char name[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *v = strchr(line, ':');
        if (v) {
            v += strspn(v + 1, " \t") + 1;
            snprintf(name, sizeof name, "%.*s", (int)strcspn(v, "\n"), v);
        }
        break;
    }
    if (f)
        fclose(f);
    struct utsname u;
    if (!name[0])
        snprintf(name, sizeof name, "%s", uname(&u) == 0 ? u.machine : "unknown CPU");
    snprintf(out, len, "%s, %ld cores", name, sysconf(_SC_NPROCESSORS_ONLN));
}
