// The only C++ in the core: toml++ parses, and this file turns its DOM into the C tree of toml_tree.h.
// Nothing thrown may cross into C, so every entry point catches everything.
// Built against the distribution's compiled toml++ (pkg-config sets TOML_HEADER_ONLY=0), so the parser
// is compiled once, not in this file.
#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "toml_tree.h"

extern "C" {
#include "sdtune/strutil.h"
}

namespace
{

struct too_deep {
    int line, col;
};

char *copy_string(std::string_view s)
{
    char *out = sdt_strndup(s.data(), s.size());
    if (!out)
        throw std::bad_alloc();
    return out;
}

// Zeroed, so a tree that is freed half-built (after a throw) frees only what was filled in.
sdt_toml_node *alloc_nodes(size_t count)
{
    auto *nodes = static_cast<sdt_toml_node *>(std::calloc(count ? count : 1, sizeof(sdt_toml_node)));
    if (!nodes)
        throw std::bad_alloc();
    return nodes;
}

void set_position(sdt_toml_node &out, const toml::source_region &region)
{
    out.line = static_cast<int>(region.begin.line);
    out.col = static_cast<int>(region.begin.column);
    out.key_line = out.line;
    out.key_col = out.col;
}

void convert(const toml::node &in, sdt_toml_node &out, int depth);

void convert_children_of_table(const toml::table &table, sdt_toml_node &out, int depth)
{
    out.children = alloc_nodes(table.size());
    out.count = table.size();
    size_t i = 0;
    for (auto &&[key, value] : table) {
        sdt_toml_node &child = out.children[i++];
        convert(value, child, depth + 1);
        child.key = copy_string(key.str());
        if (key.source().begin.line) {
            child.key_line = static_cast<int>(key.source().begin.line);
            child.key_col = static_cast<int>(key.source().begin.column);
        }
    }
    // toml++ keeps members in key order; people read problems in file order.
    std::stable_sort(out.children, out.children + out.count,
                     [](const sdt_toml_node &a, const sdt_toml_node &b) {
                         return a.key_line != b.key_line ? a.key_line < b.key_line : a.key_col < b.key_col;
                     });
}

void convert(const toml::node &in, sdt_toml_node &out, int depth)
{
    set_position(out, in.source());
    if (depth > SDT_TOML_MAX_DEPTH)
        throw too_deep{out.line, out.col};
    switch (in.type()) {
    case toml::node_type::table:
        out.kind = SDT_TOML_TABLE;
        convert_children_of_table(*in.as_table(), out, depth);
        break;
    case toml::node_type::array: {
        const toml::array &array = *in.as_array();
        out.kind = SDT_TOML_ARRAY;
        out.children = alloc_nodes(array.size());
        out.count = array.size();
        for (size_t i = 0; i < out.count; i++)
            convert(array[i], out.children[i], depth + 1);
        break;
    }
    case toml::node_type::string:
        out.kind = SDT_TOML_STRING;
        out.s = copy_string(in.as_string()->get());
        out.s_len = in.as_string()->get().size();
        break;
    case toml::node_type::integer:
        out.kind = SDT_TOML_INT;
        out.i = in.as_integer()->get();
        break;
    case toml::node_type::floating_point:
        out.kind = SDT_TOML_FLOAT;
        out.f = in.as_floating_point()->get();
        break;
    case toml::node_type::boolean:
        out.kind = SDT_TOML_BOOL;
        out.b = in.as_boolean()->get();
        break;
    default: out.kind = SDT_TOML_DATETIME; break;
    }
}

void free_children(sdt_toml_node *node)
{
    for (size_t i = 0; i < node->count; i++)
        free_children(&node->children[i]);
    std::free(node->children);
    std::free(node->key);
    std::free(node->s);
}

} // namespace

extern "C" int sdt_toml_parse(const char *text, size_t len, const char *file, sdt_toml_node **root,
                              sdt_diag_list *diags)
{
    *root = nullptr;
    sdt_toml_node *tree = static_cast<sdt_toml_node *>(std::calloc(1, sizeof(sdt_toml_node)));
    if (!tree) {
        sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "out of memory while reading the file");
        return -1;
    }
    try {
        toml::table table = toml::parse(std::string_view(text, len), std::string_view(file ? file : ""));
        tree->kind = SDT_TOML_TABLE;
        tree->line = tree->col = tree->key_line = tree->key_col = 1;
        convert_children_of_table(table, *tree, 0);
        *root = tree;
        return 0;
    } catch (const toml::parse_error &err) {
        std::string what(err.description());
        sdt_diag_add(diags, SDT_SEV_ERROR, file, static_cast<int>(err.source().begin.line),
                     static_cast<int>(err.source().begin.column), -1, "TOML syntax: %s", what.c_str());
    } catch (const too_deep &deep) {
        sdt_diag_add(diags, SDT_SEV_ERROR, file, deep.line, deep.col, -1,
                     "nested more than %d levels deep; a config is [section] key = value",
                     SDT_TOML_MAX_DEPTH);
    } catch (const std::bad_alloc &) {
        sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "out of memory while reading the file");
    } catch (...) {
        sdt_diag_add(diags, SDT_SEV_ERROR, file, 0, 0, -1, "the TOML parser failed unexpectedly");
    }
    sdt_toml_free(tree);
    return -1;
}

extern "C" void sdt_toml_free(sdt_toml_node *node)
{
    if (!node)
        return;
    free_children(node);
    std::free(node);
}

extern "C" const char *sdt_toml_kind_name(sdt_toml_kind kind)
{
    switch (kind) {
    case SDT_TOML_TABLE: return "table";
    case SDT_TOML_ARRAY: return "array";
    case SDT_TOML_STRING: return "string";
    case SDT_TOML_INT: return "integer";
    case SDT_TOML_FLOAT: return "float";
    case SDT_TOML_BOOL: return "boolean";
    case SDT_TOML_DATETIME: return "date/time";
    }
    return "value";
}
