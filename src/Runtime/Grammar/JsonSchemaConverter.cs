using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Llama.Compiled.Grammars;

/// <summary>
/// Writes the GBNF grammar of the JSON texts that a JSON schema accepts (the subset described on
/// <see cref="Grammar.FromJsonSchema(string)"/>). The root value has no whitespace around it, so the grammar ends
/// exactly when the value is complete.
/// </summary>
internal sealed class JsonSchemaConverter
{
    private static readonly HashSet<string> Annotations = new(StringComparer.Ordinal)
    {
        "$schema", "$id", "$comment", "$anchor", "$defs", "definitions", "title", "description", "default", "examples",
        "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding", "$vocabulary", "$dynamicAnchor",
    };

    private static readonly JsonWriterOptions CompactRelaxed = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly JsonElement _root;
    private readonly List<string> _order = [];
    private readonly Dictionary<string, string> _rules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _refRules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _bodyRules = new(StringComparer.Ordinal);

    private JsonSchemaConverter(JsonElement root) => _root = root;

    public static string Convert(JsonElement schema)
    {
        var converter = new JsonSchemaConverter(schema);
        string root = converter.Visit(schema, "", "root");
        converter._order.Insert(0, "root");
        converter._rules["root"] = root;
        var sb = new StringBuilder();
        foreach (string name in converter._order)
            sb.Append(name).Append(" ::= ").Append(converter._rules[name]).Append('\n');
        return sb.ToString();
    }

    /// <summary>The grammar of any JSON object (OpenAI's <c>json_object</c> mode).</summary>
    public static string AnyJsonObject()
    {
        var converter = new JsonSchemaConverter(default);
        converter.Primitive("object");
        var sb = new StringBuilder("root ::= object\n");
        foreach (string name in converter._order)
            sb.Append(name).Append(" ::= ").Append(converter._rules[name]).Append('\n');
        return sb.ToString();
    }

    // ---- rules ----

    private string Define(string hint, string body)
    {
        // Identical bodies share a rule.
        if (_bodyRules.TryGetValue(body, out string? existing))
            return existing;
        string name = UniqueName(hint);
        _order.Add(name);
        _rules[name] = body;
        _bodyRules[body] = name;
        return name;
    }

    private string UniqueName(string hint)
    {
        var sb = new StringBuilder();
        foreach (char c in hint)
            sb.Append(char.IsAsciiLetterOrDigit(c) ? c : '-');
        string baseName = sb.Length == 0 ? "rule" : sb.ToString();
        if (baseName.Length > 40)
            baseName = baseName[..40];
        string name = baseName;
        for (int i = 1; _rules.ContainsKey(name) || name == "root" || IsPrimitiveName(name); i++)
            name = baseName + "-" + i.ToString(CultureInfo.InvariantCulture);
        _rules[name] = "";
        return name;
    }

    private static bool IsPrimitiveName(string name) => name is "space" or "char" or "hex" or "hex4" or "string" or "integral-part" or "number"
        or "integer" or "boolean" or "null" or "value" or "object" or "array" or "plain-char" or "date" or "time" or "date-time" or "uuid";

    private string Primitive(string name)
    {
        if (_rules.ContainsKey(name))
            return name;
        // Named first, so that rules that name each other (value, object, array) stop here.
        _rules[name] = "";
        _order.Add(name);
        string body = name switch
        {
            "space" => "| \" \" | \"\\n\" [ \\t]{0,20}",
            "hex" => "[0-9a-fA-F]",
            // A \u escape of anything but a surrogate (a lone surrogate is not a valid string for most parsers).
            "hex4" => $"[0-9a-cA-CeEfF] {Primitive("hex")}{{3}} | [dD] [0-7] {Primitive("hex")}{{2}}",
            "plain-char" => "[^\"\\\\\\x00-\\x1F\\x7F]",
            "char" => $"{Primitive("plain-char")} | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" {Primitive("hex4")})",
            "string" => $"\"\\\"\" {Primitive("char")}* \"\\\"\"",
            "integral-part" => "\"0\" | [1-9] [0-9]{0,15}",
            "number" => $"\"-\"? {Primitive("integral-part")} (\".\" [0-9]{{1,16}})? ([eE] [-+]? [0-9]{{1,2}})?",
            "integer" => $"\"-\"? {Primitive("integral-part")}",
            "boolean" => "\"true\" | \"false\"",
            "null" => "\"null\"",
            "value" => $"{Primitive("object")} | {Primitive("array")} | {Primitive("string")} | {Primitive("number")} | {Primitive("boolean")} | {Primitive("null")}",
            "object" => $"\"{{\" {Primitive("space")} ({Primitive("string")} {Primitive("space")} \":\" space {Primitive("value")} space (\",\" space string space \":\" space value space)*)? \"}}\"",
            "array" => $"\"[\" {Primitive("space")} ({Primitive("value")} space (\",\" space value space)*)? \"]\"",
            "date" => "[1-9] [0-9]{3} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) | (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))",
            "time" => "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])",
            "date-time" => $"{Primitive("date")} \"T\" {Primitive("time")}",
            "uuid" => $"{Primitive("hex")}{{8}} \"-\" hex{{4}} \"-\" hex{{4}} \"-\" hex{{4}} \"-\" hex{{12}}",
            _ => throw new InvalidOperationException(name),
        };
        _rules[name] = body;
        return name;
    }

    // ---- schemas ----

    private string Visit(JsonElement schema, string pointer, string hint)
    {
        if (schema.ValueKind == JsonValueKind.True)
            return Primitive("value");
        if (schema.ValueKind == JsonValueKind.False)
            throw new GrammarFormatException("The schema 'false' accepts no value", pointer);
        if (schema.ValueKind != JsonValueKind.Object)
            throw new GrammarFormatException($"A schema must be an object or a boolean, not {schema.ValueKind}", pointer);

        if (schema.TryGetProperty("$ref", out JsonElement reference))
            return Reference(reference, pointer);

        if (schema.TryGetProperty("allOf", out JsonElement allOf))
        {
            JsonElement merged = WithoutKeyword(schema, "allOf");
            int i = 0;
            foreach (JsonElement part in ArrayOf(allOf, pointer + "/allOf"))
                merged = Merge(merged, Resolve(part, $"{pointer}/allOf/{i++}"), pointer);
            return Visit(merged, pointer, hint);
        }

        foreach (string keyword in (string[])["anyOf", "oneOf"])
        {
            if (!schema.TryGetProperty(keyword, out JsonElement branches))
                continue;
            JsonElement rest = WithoutKeyword(schema, keyword);
            bool hasRest = HasConstraints(rest);
            var alternatives = new List<string>();
            int i = 0;
            foreach (JsonElement branch in ArrayOf(branches, $"{pointer}/{keyword}"))
            {
                string branchPointer = $"{pointer}/{keyword}/{i}";
                JsonElement b = hasRest ? Merge(rest, Resolve(branch, branchPointer), branchPointer) : branch;
                alternatives.Add(Visit(b, branchPointer, $"{hint}-{i}"));
                i++;
            }
            if (alternatives.Count == 0)
                throw new GrammarFormatException($"'{keyword}' has no schemas", pointer);
            return Define(hint, string.Join(" | ", alternatives));
        }

        if (schema.TryGetProperty("const", out JsonElement constant))
            return Define(hint, GbnfText.Literal(CompactJson(constant)));

        if (schema.TryGetProperty("enum", out JsonElement values))
        {
            var alternatives = new List<string>();
            foreach (JsonElement value in ArrayOf(values, pointer + "/enum"))
                alternatives.Add(GbnfText.Literal(CompactJson(value)));
            if (alternatives.Count == 0)
                throw new GrammarFormatException("'enum' has no values", pointer);
            return Define(hint, string.Join(" | ", alternatives));
        }

        if (schema.TryGetProperty("type", out JsonElement type))
        {
            if (type.ValueKind == JsonValueKind.String)
                return VisitType(schema, type.GetString()!, pointer, hint);
            if (type.ValueKind == JsonValueKind.Array)
            {
                var alternatives = new List<string>();
                foreach (JsonElement t in type.EnumerateArray())
                {
                    if (t.ValueKind != JsonValueKind.String)
                        throw new GrammarFormatException("'type' must be a string or an array of strings", pointer + "/type");
                    alternatives.Add(VisitType(schema, t.GetString()!, pointer, $"{hint}-{t.GetString()}"));
                }
                if (alternatives.Count == 0)
                    throw new GrammarFormatException("'type' is an empty array", pointer + "/type");
                return Define(hint, string.Join(" | ", alternatives));
            }
            throw new GrammarFormatException("'type' must be a string or an array of strings", pointer + "/type");
        }

        // No type: what the keywords imply, else any value.
        if (Has(schema, "properties", "additionalProperties", "required"))
            return VisitType(schema, "object", pointer, hint);
        if (Has(schema, "items", "prefixItems", "minItems", "maxItems"))
            return VisitType(schema, "array", pointer, hint);
        if (Has(schema, "minLength", "maxLength", "pattern", "format"))
            return VisitType(schema, "string", pointer, hint);
        if (Has(schema, "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))
            return VisitType(schema, "number", pointer, hint);
        return Primitive("value");
    }

    private string VisitType(JsonElement schema, string type, string pointer, string hint) => type switch
    {
        "object" => ObjectRule(schema, pointer, hint),
        "array" => ArrayRule(schema, pointer, hint),
        "string" => StringRule(schema, pointer, hint),
        "integer" => IntegerRule(schema, pointer, hint),
        "number" => Primitive("number"),
        "boolean" => Primitive("boolean"),
        "null" => Primitive("null"),
        _ => throw new GrammarFormatException($"Unknown type '{type}'", pointer + "/type"),
    };

    private string Reference(JsonElement reference, string pointer)
    {
        if (reference.ValueKind != JsonValueKind.String)
            throw new GrammarFormatException("'$ref' must be a string", pointer + "/$ref");
        string target = reference.GetString()!;
        if (_refRules.TryGetValue(target, out string? rule))
            return rule;
        JsonElement resolved = ResolvePointer(target, pointer);
        string last = target.TrimEnd('/');
        last = last[(last.LastIndexOf('/') + 1)..];
        rule = UniqueName(last.Length == 0 || last == "#" ? "ref-root" : last);
        _refRules[target] = rule;
        _order.Add(rule);
        string body = Visit(resolved, target.Length > 0 ? target[1..] : "", rule + "-value");
        _rules[rule] = body;
        return rule;
    }

    private JsonElement Resolve(JsonElement schema, string pointer)
    {
        for (int depth = 0; schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out JsonElement reference); depth++)
        {
            if (depth > 64 || reference.ValueKind != JsonValueKind.String)
                throw new GrammarFormatException("'$ref' loops or is not a string", pointer);
            schema = ResolvePointer(reference.GetString()!, pointer);
        }
        return schema;
    }

    private JsonElement ResolvePointer(string target, string pointer)
    {
        if (!target.StartsWith('#'))
            throw new GrammarFormatException($"Only local references ('#/...') are supported, not '{target}'", pointer + "/$ref");
        string path = Uri.UnescapeDataString(target[1..]);
        JsonElement current = _root;
        if (path.Length == 0)
            return current;
        if (!path.StartsWith('/'))
            throw new GrammarFormatException($"'$ref' '{target}' is not a JSON pointer (anchors are not supported)", pointer + "/$ref");
        foreach (string raw in path[1..].Split('/'))
        {
            string token = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(token, out JsonElement next))
                current = next;
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < current.GetArrayLength())
                current = current[index];
            else
                throw new GrammarFormatException($"'$ref' '{target}' points to nothing in the schema", pointer + "/$ref");
        }
        return current;
    }

    // ---- objects ----

    private string ObjectRule(JsonElement schema, string pointer, string hint)
    {
        var names = new List<string>();
        var values = new List<string>();
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out JsonElement requiredList))
        {
            foreach (JsonElement name in ArrayOf(requiredList, pointer + "/required"))
            {
                if (name.ValueKind != JsonValueKind.String)
                    throw new GrammarFormatException("'required' must list strings", pointer + "/required");
                required.Add(name.GetString()!);
            }
        }
        bool hasProperties = schema.TryGetProperty("properties", out JsonElement properties);
        if (hasProperties)
        {
            if (properties.ValueKind != JsonValueKind.Object)
                throw new GrammarFormatException("'properties' must be an object", pointer + "/properties");
            foreach (JsonProperty property in properties.EnumerateObject())
            {
                names.Add(property.Name);
                values.Add(Visit(property.Value, $"{pointer}/properties/{EscapePointer(property.Name)}", $"{hint}-{property.Name}"));
            }
        }
        foreach (string name in required)
        {
            if (!names.Contains(name))
            {
                // Required but not described: any value.
                names.Add(name);
                values.Add(Primitive("value"));
            }
        }

        // Additional properties: as the schema says; when it says nothing, allowed only if no properties are listed
        // (llama.cpp's choice: listed properties and nothing else is what a caller of a structured output means).
        string? additionalValue = null;
        if (schema.TryGetProperty("additionalProperties", out JsonElement additional))
        {
            if (additional.ValueKind != JsonValueKind.False)
                additionalValue = Visit(additional, pointer + "/additionalProperties", hint + "-additional");
        }
        else if (!hasProperties)
        {
            additionalValue = Primitive("value");
        }

        string space = Primitive("space");
        var members = new List<string>();
        for (int i = 0; i < names.Count; i++)
            members.Add(Define($"{hint}-{names[i]}-kv", $"{GbnfText.Literal(CompactJson(names[i]))} {space} \":\" {space} {values[i]} {space}"));
        string? extra = null;
        if (additionalValue is not null)
        {
            string key = AdditionalKey(names, hint);
            string kv = Define(hint + "-additional-kv", $"{key} {space} \":\" {space} {additionalValue} {space}");
            extra = Define(hint + "-additional-list", $"{kv} (\",\" {space} {kv})*");
        }

        var memo = new Dictionary<(int, bool), string>();
        string Tail(int i, bool emitted)
        {
            if (memo.TryGetValue((i, emitted), out string? rule))
                return rule;
            string sep = emitted ? $"\",\" {space} " : "";
            string body;
            if (i == names.Count)
                body = extra is null ? "\"\"" : emitted ? $"(\",\" {space} {extra})?" : $"{extra}?";
            else if (required.Contains(names[i]))
                body = $"{sep}{members[i]} {Tail(i + 1, true)}";
            else
                body = $"{sep}{members[i]} {Tail(i + 1, true)} | {Tail(i + 1, emitted)}";
            rule = Define($"{hint}-tail{i}{(emitted ? "c" : "")}", body);
            memo[(i, emitted)] = rule;
            return rule;
        }
        return Define(hint, $"\"{{\" {space} {Tail(0, false)} \"}}\"");
    }

    /// <summary>A key that is none of <paramref name="names"/>, written without escapes (a trie of the names, llama.cpp's way).</summary>
    private string AdditionalKey(List<string> names, string hint)
    {
        string plain = Primitive("plain-char");
        var trie = new KeyTrie();
        foreach (string name in names)
            trie.Add(name);
        string Content(KeyTrie node, int depth)
        {
            var alternatives = new List<string>();
            if (!node.Terminal)
                alternatives.Add("\"\"");
            CodePointSet children = CodePointSet.Empty;
            foreach ((int c, KeyTrie child) in node.Children)
            {
                children = children.Union(CodePointSet.Of(c));
                if (IsPlain(c))
                    alternatives.Add($"{GbnfText.Literal(char.ConvertFromUtf32(c))} {Content(child, depth + 1)}");
            }
            CodePointSet others = PlainChars.Except(children);
            alternatives.Add($"{GbnfText.Class(others)} {plain}*");
            return Define($"{hint}-key{depth}", string.Join(" | ", alternatives));
        }
        // A key is a name only when it is exactly that name: the trie walk stops allowing the end there.
        string content = names.Count == 0 ? $"{plain}*" : Content(trie, 0);
        return Define(hint + "-additional-key", $"\"\\\"\" {content} \"\\\"\"");
    }

    private static readonly CodePointSet PlainChars = CodePointSet.FromRanges([(0x20, 0x21), (0x23, 0x5B), (0x5D, 0x7E), (0x80, CodePointSet.MaxCodePoint)]);

    private static bool IsPlain(int c) => PlainChars.Contains(c);

    private sealed class KeyTrie
    {
        public bool Terminal;
        public SortedDictionary<int, KeyTrie> Children { get; } = [];

        public void Add(string name)
        {
            KeyTrie node = this;
            foreach (Rune rune in name.EnumerateRunes())
            {
                if (!node.Children.TryGetValue(rune.Value, out KeyTrie? child))
                    node.Children[rune.Value] = child = new KeyTrie();
                node = child;
            }
            node.Terminal = true;
        }
    }

    // ---- arrays ----

    private string ArrayRule(JsonElement schema, string pointer, string hint)
    {
        int min = Count(schema, "minItems", pointer) ?? 0;
        int? max = Count(schema, "maxItems", pointer);
        if (max < min)
            throw new GrammarFormatException($"'maxItems' {max} is below 'minItems' {min}", pointer);
        var prefix = new List<string>();
        if (schema.TryGetProperty("prefixItems", out JsonElement prefixItems))
        {
            int i = 0;
            foreach (JsonElement item in ArrayOf(prefixItems, pointer + "/prefixItems"))
            {
                prefix.Add(Visit(item, $"{pointer}/prefixItems/{i}", $"{hint}-{i}"));
                i++;
            }
        }
        string? rest;
        if (schema.TryGetProperty("items", out JsonElement items))
            rest = items.ValueKind == JsonValueKind.False ? null : Visit(items, pointer + "/items", hint + "-item");
        else
            rest = Primitive("value");
        if (rest is null && min > prefix.Count)
            throw new GrammarFormatException($"'minItems' {min} needs more items than 'prefixItems' allows", pointer);

        string space = Primitive("space");
        // After j items: what may follow.
        string Tail(int j)
        {
            if (max is int m && j >= m)
                return "";
            if (j < prefix.Count)
            {
                string next = $"\",\" {space} {prefix[j]} {space} {Tail(j + 1)}";
                return j < min ? next : $"({next})?";
            }
            if (rest is null)
                return "";
            int remainingMin = Math.Max(0, min - j);
            string repeat = max is int mx ? $"{{{remainingMin},{mx - j}}}" : remainingMin == 0 ? "*" : $"{{{remainingMin},}}";
            return $"(\",\" {space} {rest} {space}){repeat}";
        }
        string first = prefix.Count > 0 ? prefix[0] : rest ?? "";
        string body;
        if (first.Length == 0 || max == 0)
            body = $"\"[\" {space} \"]\"";
        else if (min == 0)
            body = $"\"[\" {space} ({first} {space} {Tail(1)})? \"]\"";
        else
            body = $"\"[\" {space} {first} {space} {Tail(1)} \"]\"";
        return Define(hint, body);
    }

    // ---- strings ----

    private string StringRule(JsonElement schema, string pointer, string hint)
    {
        if (schema.TryGetProperty("pattern", out JsonElement pattern))
        {
            if (pattern.ValueKind != JsonValueKind.String)
                throw new GrammarFormatException("'pattern' must be a string", pointer + "/pattern");
            string content = new RegexConverter(pattern.GetString()!, pointer + "/pattern", this).Convert();
            return Define(hint, $"\"\\\"\" {content} \"\\\"\"");
        }
        if (schema.TryGetProperty("format", out JsonElement format) && format.ValueKind == JsonValueKind.String
            && format.GetString() is "date" or "time" or "date-time" or "uuid")
        {
            return Define(hint, $"\"\\\"\" {Primitive(format.GetString()!)} \"\\\"\"");
        }
        int min = Count(schema, "minLength", pointer) ?? 0;
        int? max = Count(schema, "maxLength", pointer);
        if (max < min)
            throw new GrammarFormatException($"'maxLength' {max} is below 'minLength' {min}", pointer);
        if (min == 0 && max is null)
            return Primitive("string");
        string repeat = max is int m ? (m == min ? $"{{{min}}}" : $"{{{min},{m}}}") : $"{{{min},}}";
        return Define(hint, $"\"\\\"\" {Primitive("char")}{repeat} \"\\\"\"");
    }

    /// <summary>The GBNF of JSON string content whose decoded characters are in <paramref name="set"/> (escaped where JSON must).</summary>
    internal static string StringChars(CodePointSet set, string pointer)
    {
        var alternatives = new List<string>();
        CodePointSet plain = set.Intersect(PlainChars);
        if (!plain.IsEmpty)
        {
            var ranges = plain.Ranges;
            alternatives.Add(ranges.Length == 1 && ranges[0].Lo == ranges[0].Hi ? GbnfText.Literal(char.ConvertFromUtf32(ranges[0].Lo)) : GbnfText.Class(plain));
        }
        foreach ((int c, string escape) in (ReadOnlySpan<(int, string)>)[('"', "\\\""), ('\\', "\\\\"), ('\n', "\\n"), ('\r', "\\r"), ('\t', "\\t"), ('\b', "\\b"), ('\f', "\\f")])
        {
            if (set.Contains(c))
                alternatives.Add(GbnfText.Literal(escape));
        }
        if (alternatives.Count == 0)
            throw new GrammarFormatException("The pattern requires a control character, which is not generated", pointer);
        return alternatives.Count == 1 ? alternatives[0] : "(" + string.Join(" | ", alternatives) + ")";
    }

    internal string AnyStringChar() => Primitive("char");

    // ---- integers ----

    private string IntegerRule(JsonElement schema, string pointer, string hint)
    {
        long? min = Bound(schema, "minimum", pointer, lower: true, exclusive: false);
        long? exclusiveMin = Bound(schema, "exclusiveMinimum", pointer, lower: true, exclusive: true);
        long? max = Bound(schema, "maximum", pointer, lower: false, exclusive: false);
        long? exclusiveMax = Bound(schema, "exclusiveMaximum", pointer, lower: false, exclusive: true);
        if (exclusiveMin is long em && (min is null || em > min))
            min = em;
        if (exclusiveMax is long ex && (max is null || ex < max))
            max = ex;
        if (min is null && max is null)
            return Primitive("integer");
        if (min > max)
            throw new GrammarFormatException($"No integer is between the minimum {min} and the maximum {max}", pointer);
        return Define(hint, IntegerRange.Gbnf(min, max));
    }

    private static long? Bound(JsonElement schema, string keyword, string pointer, bool lower, bool exclusive)
    {
        if (!schema.TryGetProperty(keyword, out JsonElement value))
            return null;
        if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
            return null; // draft 4's boolean exclusiveMinimum/Maximum: not supported, ignored
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d))
            throw new GrammarFormatException($"'{keyword}' must be a number", pointer + "/" + keyword);
        double bound = lower ? (exclusive ? Math.Floor(d) + 1 : Math.Ceiling(d)) : (exclusive ? Math.Ceiling(d) - 1 : Math.Floor(d));
        return (long)Math.Clamp(bound, -IntegerRange.Limit, IntegerRange.Limit);
    }

    // ---- helpers ----

    private static int? Count(JsonElement schema, string keyword, string pointer)
    {
        if (!schema.TryGetProperty(keyword, out JsonElement value))
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d) || d < 0 || d != Math.Floor(d))
            throw new GrammarFormatException($"'{keyword}' must be a non-negative integer", pointer + "/" + keyword);
        return (int)Math.Min(d, GbnfParser.MaxRepetitions + 1);
    }

    private static bool Has(JsonElement schema, params ReadOnlySpan<string> keywords)
    {
        foreach (string keyword in keywords)
        {
            if (schema.TryGetProperty(keyword, out _))
                return true;
        }
        return false;
    }

    private static bool HasConstraints(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object)
            return false;
        foreach (JsonProperty property in schema.EnumerateObject())
        {
            if (!Annotations.Contains(property.Name))
                return true;
        }
        return false;
    }

    private static JsonElement.ArrayEnumerator ArrayOf(JsonElement value, string pointer) =>
        value.ValueKind == JsonValueKind.Array ? value.EnumerateArray() : throw new GrammarFormatException("Expected an array", pointer);

    private static string EscapePointer(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    /// <summary>The value as compact JSON, non-ASCII characters as they are (not \u escapes).</summary>
    private static string CompactJson(JsonElement value)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, CompactRelaxed))
            value.WriteTo(writer);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static string CompactJson(string text)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, CompactRelaxed))
            writer.WriteStringValue(text);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static JsonElement WithoutKeyword(JsonElement schema, string keyword)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (JsonProperty property in schema.EnumerateObject())
            {
                if (property.Name != keyword)
                    property.WriteTo(writer);
            }
            writer.WriteEndObject();
        }
        return JsonDocument.Parse(buffer.ToArray()).RootElement;
    }

    /// <summary>
    /// Both schemas' keywords in one (for allOf, and anyOf/oneOf beside other keywords): properties are merged, required
    /// lists joined; for any other keyword that both have, <paramref name="b"/>'s value is taken (an approximation of
    /// the intersection, exact when they do not conflict).
    /// </summary>
    private JsonElement Merge(JsonElement a, JsonElement b, string pointer)
    {
        if (a.ValueKind == JsonValueKind.True || (a.ValueKind == JsonValueKind.Object && !a.EnumerateObject().MoveNext()))
            return b;
        if (b.ValueKind == JsonValueKind.True)
            return a;
        if (a.ValueKind != JsonValueKind.Object || b.ValueKind != JsonValueKind.Object)
            throw new GrammarFormatException("Cannot combine these schemas (one accepts nothing)", pointer);
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (JsonProperty property in a.EnumerateObject())
            {
                if (!b.TryGetProperty(property.Name, out JsonElement other))
                {
                    property.WriteTo(writer);
                    continue;
                }
                writer.WritePropertyName(property.Name);
                if (property.Name == "properties" && property.Value.ValueKind == JsonValueKind.Object && other.ValueKind == JsonValueKind.Object)
                {
                    writer.WriteStartObject();
                    foreach (JsonProperty p in property.Value.EnumerateObject())
                    {
                        writer.WritePropertyName(p.Name);
                        (other.TryGetProperty(p.Name, out JsonElement q) ? Merge(Resolve(p.Value, pointer), Resolve(q, pointer), pointer) : p.Value).WriteTo(writer);
                    }
                    foreach (JsonProperty q in other.EnumerateObject())
                    {
                        if (!property.Value.TryGetProperty(q.Name, out _))
                            q.WriteTo(writer);
                    }
                    writer.WriteEndObject();
                }
                else if (property.Name == "required" && property.Value.ValueKind == JsonValueKind.Array && other.ValueKind == JsonValueKind.Array)
                {
                    var names = new List<string>();
                    foreach (JsonElement n in property.Value.EnumerateArray())
                        names.Add(n.GetString() ?? "");
                    foreach (JsonElement n in other.EnumerateArray())
                    {
                        if (!names.Contains(n.GetString() ?? ""))
                            names.Add(n.GetString() ?? "");
                    }
                    writer.WriteStartArray();
                    foreach (string n in names)
                        writer.WriteStringValue(n);
                    writer.WriteEndArray();
                }
                else
                {
                    other.WriteTo(writer);
                }
            }
            foreach (JsonProperty property in b.EnumerateObject())
            {
                if (!a.TryGetProperty(property.Name, out _))
                    property.WriteTo(writer);
            }
            writer.WriteEndObject();
        }
        return JsonDocument.Parse(buffer.ToArray()).RootElement;
    }
}

/// <summary>GBNF for the integers in a range, digit by digit (leading zeros never, "-0" never).</summary>
internal static class IntegerRange
{
    /// <summary>Bounds are clamped to ±(10^16 - 1), the 16 digits of an unbounded integer.</summary>
    public const long Limit = 9_999_999_999_999_999;

    public static string Gbnf(long? min, long? max)
    {
        var parts = new List<string>();
        long lo = min ?? -Limit, hi = max ?? Limit;
        if (lo < 0)
        {
            // Negative values: "-" then magnitudes from max(1, -hi) to -lo.
            long magnitudeLo = Math.Max(1, hi < 0 ? -hi : 1), magnitudeHi = -lo;
            if (magnitudeLo <= magnitudeHi)
                parts.Add("\"-\" " + Magnitudes(magnitudeLo, magnitudeHi));
        }
        if (hi >= 0)
            parts.Add(Magnitudes(Math.Max(0, lo), hi));
        return string.Join(" | ", parts);
    }

    private static string Magnitudes(long lo, long hi)
    {
        var parts = new List<string>();
        int loDigits = Digits(lo), hiDigits = Digits(hi);
        for (int d = loDigits; d <= hiDigits; d++)
        {
            long first = d == 1 ? 0 : Pow10(d - 1), last = Pow10(d) - 1;
            long a = Math.Max(lo, first), b = Math.Min(hi, last);
            if (a <= b)
                parts.Add(SameLength(a.ToString(CultureInfo.InvariantCulture), b.ToString(CultureInfo.InvariantCulture)));
        }
        return parts.Count == 1 ? parts[0] : "(" + string.Join(" | ", parts) + ")";
    }

    private static string SameLength(string a, string b)
    {
        if (a.Length == 1)
            return a == b ? $"\"{a}\"" : $"[{a}-{b}]";
        if (a[0] == b[0])
            return $"\"{a[0]}\" {SameLength(a[1..], b[1..])}";
        var parts = new List<string>();
        int start = a[0], end = b[0];
        string restA = a[1..], restB = b[1..];
        if (restA.Trim('0').Length != 0)
        {
            parts.Add($"\"{a[0]}\" {Group(SameLength(restA, new string('9', restA.Length)))}");
            start++;
        }
        bool nines = restB.Trim('9').Length == 0;
        if (!nines)
            end--;
        if (start <= end)
            parts.Add($"{(start == end ? $"\"{(char)start}\"" : $"[{(char)start}-{(char)end}]")} [0-9]{{{a.Length - 1}}}");
        if (!nines)
            parts.Add($"\"{b[0]}\" {Group(SameLength(new string('0', restB.Length), restB))}");
        return "(" + string.Join(" | ", parts) + ")";
    }

    private static string Group(string expression) => expression.Contains(" | ", StringComparison.Ordinal) && !expression.StartsWith('(') ? "(" + expression + ")" : expression;

    private static int Digits(long value) => value.ToString(CultureInfo.InvariantCulture).Length;

    private static long Pow10(int n)
    {
        long result = 1;
        for (int i = 0; i < n; i++)
            result *= 10;
        return result;
    }
}
