using System;
using System.Collections.Generic;
using System.Text.Json.Nodes;

namespace Llama.Compiled.Tests.Grammars;

/// <summary>
/// Seeded random JSON schemas over the features Grammar.FromJsonSchema enforces: objects (required and optional
/// properties, additionalProperties false/true/a schema), arrays (items, prefixItems, minItems/maxItems), enum, const,
/// strings (min/maxLength, patterns, formats, non-ASCII enums), integers with bounds, numbers, booleans, null,
/// anyOf/oneOf of disjoint branches, type arrays, allOf of objects, $ref/$defs including a recursive tree.
/// </summary>
public sealed class RandomSchemas(int seed)
{
    private readonly Random _random = new(seed);
    private JsonObject? _defs;

    private static readonly string[] Patterns =
    [
        "^[a-z]{2,5}$", "^\\d{3}-\\d{4}$", "^(foo|bar)+$", "^[A-Z][a-z]*$", "ab+c", "^\\w{1,8}@\\w{1,8}\\.com$", "^[^\\s\"]{1,8}$",
        "^(?:0|[1-9]\\d*)$", "^[a-f0-9]{4}(-[a-f0-9]{2})?$", "^x.y$", "^[\\u00e0-\\u00ff]{1,3}$", "^(\\(\\d\\)|\\[\\w\\]){1,3}$",
    ];

    private static readonly string[] Formats = ["date", "time", "date-time", "uuid"];

    private static readonly string[] Words = ["alpha", "beta", "é", "日本語", "naïve", "x y", "quote\"d", "back\\slash", "tab\tbed", "🎂", ""];

    public JsonObject Next()
    {
        _defs = null;
        JsonObject schema = _random.Next(10) == 0 ? Tree() : Value(0);
        if (_defs is not null)
            schema["$defs"] = _defs;
        return schema;
    }

    private int Next(int max) => _random.Next(max);

    private JsonObject Value(int depth)
    {
        int pick = Next(depth >= 3 ? 9 : 14);
        return pick switch
        {
            0 => String(),
            1 => Integer(),
            2 => new JsonObject { ["type"] = "number" },
            3 => new JsonObject { ["type"] = "boolean" },
            4 => new JsonObject { ["type"] = "null" },
            5 => Enum(),
            6 => new JsonObject { ["const"] = Literal() },
            7 => new JsonObject { ["type"] = new JsonArray("string", "null"), ["maxLength"] = Next(6) },
            8 => String(),
            9 => Object(depth),
            10 => Object(depth),
            11 => Array(depth),
            12 => Alternatives(depth),
            _ => Definition(depth),
        };
    }

    private JsonObject String()
    {
        var s = new JsonObject { ["type"] = "string" };
        switch (Next(5))
        {
            case 0:
                s["pattern"] = Patterns[Next(Patterns.Length)];
                break;
            case 1:
                s["format"] = Formats[Next(Formats.Length)];
                break;
            case 2:
                int min = Next(4);
                s["minLength"] = min;
                s["maxLength"] = min + Next(8);
                break;
            case 3:
                s["maxLength"] = Next(10);
                break;
        }
        return s;
    }

    private JsonObject Integer()
    {
        var s = new JsonObject { ["type"] = "integer" };
        switch (Next(5))
        {
            case 0:
                long lo = Next(2000) - 1000;
                s["minimum"] = lo;
                s["maximum"] = lo + Next(3000);
                break;
            case 1:
                s["minimum"] = Next(100) - 50;
                break;
            case 2:
                s["exclusiveMaximum"] = Next(100) - 50;
                break;
            case 3:
                s["exclusiveMinimum"] = Next(10);
                s["maximum"] = 10 + Next(100000);
                break;
        }
        return s;
    }

    private JsonObject Enum()
    {
        var values = new JsonArray();
        int n = 1 + Next(4);
        for (int i = 0; i < n; i++)
            values.Add(Literal());
        return new JsonObject { ["enum"] = values };
    }

    private JsonNode? Literal() => Next(6) switch
    {
        0 => JsonValue.Create(Next(1000) - 500),
        1 => JsonValue.Create(Next(2) == 0),
        2 => null,
        3 => new JsonObject { ["k"] = Words[Next(Words.Length)], ["n"] = 1.5 },
        _ => JsonValue.Create(Words[Next(Words.Length)]),
    };

    private JsonObject Object(int depth)
    {
        var properties = new JsonObject();
        var required = new JsonArray();
        int n = Next(5);
        for (int i = 0; i < n; i++)
        {
            string name = Next(4) == 0 ? Words[Next(Words.Length)] + i : "p" + i;
            properties[name] = Value(depth + 1);
            if (Next(2) == 0)
                required.Add(name);
        }
        var s = new JsonObject { ["type"] = "object", ["properties"] = properties, ["required"] = required };
        switch (Next(4))
        {
            case 0:
                s["additionalProperties"] = false;
                break;
            case 1:
                s["additionalProperties"] = true;
                break;
            case 2:
                s["additionalProperties"] = new JsonObject { ["type"] = "integer" };
                break;
        }
        if (Next(8) == 0)
        {
            // The first part's additionalProperties would apply to the second part's property too: none.
            s.Remove("additionalProperties");
            return new JsonObject { ["allOf"] = new JsonArray(s, new JsonObject { ["properties"] = new JsonObject { ["extra"] = new JsonObject { ["type"] = "boolean" } }, ["required"] = new JsonArray("extra") }) };
        }
        return s;
    }

    private JsonObject Array(int depth)
    {
        var s = new JsonObject { ["type"] = "array" };
        if (Next(4) == 0)
        {
            s["prefixItems"] = new JsonArray(Value(depth + 1), Value(depth + 1));
            if (Next(2) == 0)
                s["items"] = false;
        }
        else
        {
            s["items"] = Value(depth + 1);
        }
        int min = Next(3);
        if (Next(2) == 0)
            s["minItems"] = min;
        if (Next(2) == 0)
            s["maxItems"] = min + Next(4);
        return s;
    }

    private JsonObject Alternatives(int depth)
    {
        // Branches of different types, so that oneOf's "exactly one" holds too.
        var branches = new List<JsonObject> { String(), Integer(), new() { ["type"] = "boolean" }, new() { ["type"] = "null" }, Object(depth + 1), Array(depth + 1) };
        var chosen = new JsonArray();
        int first = Next(branches.Count), second = (first + 1 + Next(branches.Count - 1)) % branches.Count;
        chosen.Add(branches[first]);
        chosen.Add(branches[second]);
        if (Next(3) == 0)
            return new JsonObject { ["type"] = new JsonArray("integer", "boolean") };
        return new JsonObject { [Next(2) == 0 ? "anyOf" : "oneOf"] = chosen };
    }

    private JsonObject Definition(int depth)
    {
        _defs ??= [];
        string name = "d" + _defs.Count;
        _defs[name] = null; // taken before the value, which may define more
        _defs[name] = Value(depth + 1);
        return new JsonObject { ["$ref"] = "#/$defs/" + name };
    }

    private JsonObject Tree()
    {
        _defs = new JsonObject
        {
            ["node"] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["value"] = new JsonObject { ["type"] = "integer", ["minimum"] = 0, ["maximum"] = 99 },
                    ["children"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["$ref"] = "#/$defs/node" }, ["maxItems"] = 2 },
                },
                ["required"] = new JsonArray("value"),
                ["additionalProperties"] = false,
            },
        };
        return new JsonObject { ["$ref"] = "#/$defs/node" };
    }
}
