/* Sharded safetensors checkpoints: model.safetensors.index.json maps every tensor name to
 * the shard file, beside the index, that contains it
 * ({"metadata": {...}, "weight_map": {"tensor": "file"}}). */
#include "source_internal.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* Returns 1 when `name` is a plain file name: no directory part, not "." or "..". */
static int is_plain_name(const char *name, size_t len)
{
	if (len == 0 || strlen(name) != len)   /* empty, or an embedded NUL */
		return 0;
	if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	return 1;
}

/* Validates weight_map and lists its distinct file names in first-mention order (borrowed
 * from the JSON). `tensors_per_file` (a JSON object the caller frees) maps each file name to
 * its number of tensors. Its hash table keeps the work linear in the number of tensors. */
static uc_status list_files(const json_t *map, const char ***files, size_t *count,
			    json_t *tensors_per_file, uc_error *err)
{
	*count = 0;
	*files = ucp_calloc(json_object_size(map), sizeof **files);
	if (!*files)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory reading weight_map");

	const char *tensor;
	json_t *value;
	json_object_foreach((json_t *)map, tensor, value) {
		if (!json_is_string(value))
			return ucp_fail(err, UC_ERR_FORMAT,
					"weight_map: the file of tensor \"%.200s\" is not a string", tensor);
		const char *file = json_string_value(value);
		if (!is_plain_name(file, json_string_length(value)))
			return ucp_fail(err, UC_ERR_FORMAT,
					"weight_map: tensor \"%.200s\" names file \"%.200s\", which is not "
					"a plain file name (no '/', \"..\", \".\" or NUL); shards must sit "
					"beside the index",
					tensor, file);
		json_t *seen = json_object_get(tensors_per_file, file);
		json_int_t tensors = seen ? json_integer_value(seen) + 1 : 1;
		if (json_object_set_new(tensors_per_file, file, json_integer(tensors)) != 0)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory reading weight_map");
		if (!seen)
			(*files)[(*count)++] = file;
	}
	return UC_OK;
}

/* Checks that every tensor of `parsed` is mapped to `file`, and every tensor mapped to
 * `file` (`mapped_here` of them) is in `parsed`. */
static uc_status check_file_against_map(const json_t *map, const char *file, size_t mapped_here,
					const ucp_parsed_file *parsed, uc_error *err)
{
	const char *tensor;
	json_t *value;

	for (size_t i = 0; i < parsed->tensor_count; i++) {
		const char *name = parsed->tensors[i].name;
		const json_t *target = json_object_get(map, name);
		if (!target)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor \"%.200s\" of %s is missing from weight_map", name, file);
		if (strcmp(json_string_value(target), file) != 0)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor \"%.200s\" is in %s but weight_map maps it to %s (a "
					"tensor may appear in only one shard)",
					name, file, json_string_value(target));
	}
	/* Every tensor of the file is mapped here and names are unique. So when the file has
	 * fewer tensors than mapped_here, a mapped tensor is absent. A JSON object of the file's
	 * names finds it for the message in time linear in the map. */
	if (parsed->tensor_count == mapped_here)
		return UC_OK;
	json_t *names = json_object();
	for (size_t i = 0; names && i < parsed->tensor_count; i++) {
		if (json_object_set_new(names, parsed->tensors[i].name, json_true()) != 0) {
			json_decref(names);
			names = NULL;
		}
	}
	if (!names)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory checking %s against weight_map", file);
	uc_status rc = UC_OK;
	json_object_foreach((json_t *)map, tensor, value) {
		if (strcmp(json_string_value(value), file) == 0 && !json_object_get(names, tensor)) {
			rc = ucp_fail(err, UC_ERR_FORMAT,
				      "weight_map maps tensor \"%.200s\" to %s, which does not contain it",
				      tensor, file);
			break;
		}
	}
	json_decref(names);
	return rc;
}

/* Returns a new string "<directory of index>/<file>". */
static char *join_beside(const char *index_path, const char *file)
{
	const char *slash = strrchr(index_path, '/');
	size_t dir_len = slash ? (size_t)(slash - index_path) + 1 : 0;
	size_t len = dir_len + strlen(file) + 1;
	char *path = ucp_malloc(len);
	if (path) {
		memcpy(path, index_path, dir_len);
		memcpy(path + dir_len, file, len - dir_len);
	}
	return path;
}

static uc_status open_shard(uc_source *src, const char *index_path, const json_t *map,
			    const char *file, size_t mapped_here, uc_error *err)
{
	char *path = join_beside(index_path, file);
	if (!path)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory");

	ucp_mapping mapping;
	ucp_parsed_file *parsed = NULL;
	uc_status rc = ucp_map_file(path, &mapping, err);
	if (rc != UC_OK)
		goto out;
	rc = ucp_st_parse(mapping.data, mapping.size, &parsed, err);
	if (rc != UC_OK) {
		ucp_error_prefix(err, "%s", path);
		ucp_unmap_file(&mapping);
		goto out;
	}
	rc = check_file_against_map(map, file, mapped_here, parsed, err);
	if (rc != UC_OK) {
		ucp_parsed_file_free(parsed);
		ucp_unmap_file(&mapping);
		goto out;
	}
	rc = ucp_source_add_file(src, &mapping, parsed, err);

out:
	ucp_free(path);
	return rc;
}

static uc_status read_index(uc_source *src, const ucp_mapping *index, const json_t *root,
			    uc_error *err)
{
	const json_t *map = json_object_get(root, "weight_map");
	const json_t *metadata = json_object_get(root, "metadata");
	if (!json_is_object(root) || !json_is_object(map))
		return ucp_fail(err, UC_ERR_FORMAT,
				"JSON file without a \"weight_map\" object; a safetensors index "
				"needs one");
	if (metadata && !json_is_object(metadata) && !json_is_null(metadata))
		return ucp_fail(err, UC_ERR_FORMAT, "\"metadata\" is not a JSON object");

	const char **files = NULL;
	size_t count = 0;
	json_t *tensors_per_file = json_object();
	if (!tensors_per_file)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory reading weight_map");
	uc_status rc = list_files(map, &files, &count, tensors_per_file, err);
	for (size_t i = 0; i < count && rc == UC_OK; i++) {
		json_int_t mapped_here = json_integer_value(json_object_get(tensors_per_file, files[i]));
		rc = open_shard(src, index->path, map, files[i], (size_t)mapped_here, err);
	}
	json_decref(tensors_per_file);
	ucp_free(files);
	return rc;
}

uc_status ucp_index_open(uc_source *src, const ucp_mapping *index, uc_error *err)
{
	if (index->size > UCP_ST_MAX_HEADER_BYTES)
		return ucp_fail(err, UC_ERR_FORMAT, "%s: index is %llu bytes, over the limit of %u",
				index->path, (unsigned long long)index->size,
				UCP_ST_MAX_HEADER_BYTES);

	json_error_t jerr;
	json_t *root = json_loadb((const char *)index->data, (size_t)index->size,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (ucp_json_out_of_memory(&jerr))
			return ucp_fail(err, UC_ERR_NOMEM, "%s: out of memory", index->path);
		return ucp_fail(err, UC_ERR_FORMAT,
				"%s: index is not valid JSON at line %d, column %d: %s%s",
				index->path, jerr.line, jerr.column, jerr.text,
				ucp_json_error_hint(jerr.text));
	}
	uc_status rc = read_index(src, index, root, err);
	json_decref(root);
	if (rc != UC_OK)
		ucp_error_prefix(err, "%s", index->path);
	return rc;
}
