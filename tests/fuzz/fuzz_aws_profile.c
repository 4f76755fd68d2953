/* Fuzz target: the AWS shared credentials and config files (inih, canopy's
 * profile matching). The input is written as both files; the profile is
 * "default", then "fuzz" (a [fuzz] section, or [profile fuzz] in the config
 * file).
 *
 * Invariants: no crash or leak; credentials found have a key id and a
 * secret, source "profile"; a region read is terminated in its buffer. */
#include "aws/aws_internal.h"
#include "fuzz_util.h"

static char cred_path[256], conf_path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("TMPDIR");
    snprintf(cred_path, sizeof cred_path, "%s/canopy-fuzz-cred-%ld",
             dir && dir[0] ? dir : "/tmp", (long)getpid());
    snprintf(conf_path, sizeof conf_path, "%s/canopy-fuzz-conf-%ld",
             dir && dir[0] ? dir : "/tmp", (long)getpid());
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    unsetenv("AWS_PROFILE");
    return 0;
}

static void write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_file(cred_path, data, size);
    write_file(conf_path, data, size);
    static const char *const profiles[] = {"", "fuzz"};
    for (int i = 0; i < 2; i++) {
        cnp_aws_config cfg;
        memset(&cfg, 0, sizeof cfg);
        snprintf(cfg.profile, sizeof cfg.profile, "%s", profiles[i]);
        aws_credentials creds;
        cnp_err err = {{0}};
        cnp_status st = aws_profile_credentials(&cfg, &creds, &err);
        FUZZ_CHECK(st == CNP_OK || st == CNP_ERR_NOTFOUND || st == CNP_ERR_CONFIG);
        if (st == CNP_OK) {
            FUZZ_CHECK(creds.access_key_id[0] && creds.secret_access_key[0]);
            FUZZ_CHECK(strcmp(creds.source, "profile") == 0);
        }
        char region[64];
        aws_profile_region(profiles[i][0] ? profiles[i] : NULL, region, sizeof region);
        FUZZ_CHECK(fuzz_terminated(region, sizeof region));
    }
    return 0;
}
