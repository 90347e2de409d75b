using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests.Grammars;

public class JsonSchemaGrammarTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0L, 0L)]
    [InlineData(1L, 9L)]
    [InlineData(5L, 123L)]
    [InlineData(-15L, 7L)]
    [InlineData(-200L, -13L)]
    [InlineData(99L, 1000L)]
    [InlineData(-1000L, 1000L)]
    [InlineData(10L, null)]
    [InlineData(-25L, null)]
    [InlineData(null, -5L)]
    [InlineData(null, 42L)]
    public void IntegerBoundsAreExact(long? min, long? max)
    {
        var schema = new JsonObject { ["type"] = "integer" };
        if (min is long lo)
            schema["minimum"] = lo;
        if (max is long hi)
            schema["maximum"] = hi;
        Grammar grammar = Grammar.FromJsonSchema(schema.ToJsonString());
        long from = (min ?? max!.Value - 3000) - 1100, to = (max ?? min!.Value + 3000) + 1100;
        for (long v = from; v <= to; v++)
            Assert.True(grammar.IsMatch(v.ToString(System.Globalization.CultureInfo.InvariantCulture)) == (v >= (min ?? long.MinValue) && v <= (max ?? long.MaxValue)), $"{v}");
        Assert.False(grammar.IsMatch("-0"));
        Assert.False(grammar.IsMatch("007"));
    }

    [Fact]
    public void ExclusiveBoundsAndNonIntegerBounds()
    {
        Grammar g = Grammar.FromJsonSchema("""{"type":"integer","exclusiveMinimum":2.5,"exclusiveMaximum":7}""");
        Assert.Equal(["3", "4", "5", "6"], Enumerable.Range(0, 10).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Where(g.IsMatch));
    }

    public static IEnumerable<object[]> Cases() =>
    [
        ["""{"type":"string","pattern":"^\\d{3}-\\d{4}$"}""", "\"123-4567\"", true],
        ["""{"type":"string","pattern":"^\\d{3}-\\d{4}$"}""", "\"12-4567\"", false],
        ["""{"type":"string","pattern":"ab+c"}""", "\"xxabbbcyy\"", true],
        ["""{"type":"string","pattern":"ab+c"}""", "\"ac\"", false],
        ["""{"type":"string","pattern":"^a\"b\\\\c$"}""", "\"a\\\"b\\\\c\"", true],
        ["""{"type":"string","format":"date"}""", "\"2024-02-28\"", true],
        ["""{"type":"string","format":"date"}""", "\"2024-13-01\"", false],
        ["""{"type":"string","format":"date-time"}""", "\"2024-02-28T23:59:01.5+02:00\"", true],
        ["""{"type":"string","format":"uuid"}""", "\"123e4567-e89b-12d3-a456-426614174000\"", true],
        ["""{"type":"string","minLength":2,"maxLength":3}""", "\"é日\"", true],
        ["""{"type":"string","minLength":2,"maxLength":3}""", "\"é日本語\"", false],
        ["""{"enum":["é","日本語",1,null,{"a":[true]}]}""", "\"日本語\"", true],
        ["""{"enum":["é","日本語",1,null,{"a":[true]}]}""", "{\"a\":[true]}", true],
        ["""{"enum":["é","日本語",1,null,{"a":[true]}]}""", "\"e\"", false],
        ["""{"const":"x"}""", "\"x\"", true],
        ["""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}""", "{\"a\":1,\"b\":2}", false],
        ["""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true}""", "{\"a\":1,\"b\":2}", true],
        ["""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true}""", "{\"a\":1,\"a\":\"x\"}", false],
        ["""{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true}""", "{\"ab\":\"x\"}", true],
        ["""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"}},"required":["b"]}""", "{ \"a\" : 1 ,\n  \"b\": true }", true],
        ["""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"}},"required":["b"]}""", "{\"a\":1}", false],
        ["""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"boolean"}}}""", "{}", true],
        ["""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2,3]", true],
        ["""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1]", false],
        ["""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""", "[1,2,3,4]", false],
        ["""{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}""", "[\"a\",1]", true],
        ["""{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}""", "[\"a\",1,2]", false],
        ["""{"$defs":{"n":{"type":"object","properties":{"c":{"type":"array","items":{"$ref":"#/$defs/n"}}}}},"$ref":"#/$defs/n"}""", "{\"c\":[{\"c\":[{}]},{}]}", true],
        ["""{"type":["string","null"]}""", "null", true],
        ["""{"anyOf":[{"type":"integer"},{"type":"boolean"}]}""", "true", true],
        ["""{"anyOf":[{"type":"integer"},{"type":"boolean"}]}""", "\"1\"", false],
        ["""{"type":"object"}""", "{\"any\":[1,{\"x\":null}]}", true],
        ["""{}""", "[1,\"two\",{\"three\":3.5e-2}]", true],
        ["""{"type":"number"}""", "-12.5e+10", true],
        ["""{"type":"integer"}""", "1.0", false],
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public void SchemasAcceptAndReject(string schema, string json, bool accepted)
    {
        Grammar grammar = Grammar.FromJsonSchema(schema);
        Assert.True(accepted == grammar.IsMatch(json), grammar.Gbnf);
    }

    [Fact]
    public void TheRootValueHasNoSurroundingWhitespace()
    {
        Grammar grammar = Grammar.FromJsonSchema("""{"type":"object","properties":{"a":{"type":"integer"}}}""");
        Assert.False(grammar.IsMatch(" {\"a\":1}"));
        Assert.False(grammar.IsMatch("{\"a\":1} "));
        Assert.True(Grammar.AnyJson.IsMatch("{\"a\": [1, {\"b\": \"c\"}]}"));
        Assert.False(Grammar.AnyJson.IsMatch("[1]"));
    }

    public static IEnumerable<object[]> BadSchemas() =>
    [
        ["{\"type\": ", ""],
        ["""{"type":"strin"}""", "/type"],
        ["""{"properties":{"x":{"$ref":"#/$defs/missing"}}}""", "/properties/x/$ref"],
        ["""{"properties":{"p":{"type":"string","pattern":"^(?=a)b$"}}}""", "/properties/p/pattern"],
        ["""{"type":"string","pattern":"^a\\1$"}""", "/pattern"],
        ["""{"type":"string","pattern":"a^b"}""", "/pattern"],
        ["""{"$ref":"http://example.com/schema.json"}""", "/$ref"],
        ["""{"type":"array","minItems":3,"maxItems":2}""", ""],
        ["""{"type":"string","minLength":-1}""", "/minLength"],
        ["""{"items":{"anyOf":[]}}""", "/items"],
        ["""{"type":"integer","minimum":5,"maximum":4}""", ""],
        ["""false""", ""],
        ["""{"$ref":"#"}""", ""],
    ];

    [Theory]
    [MemberData(nameof(BadSchemas))]
    public void BadSchemasFailWithAJsonPointer(string schema, string pointer)
    {
        var e = Assert.Throws<GrammarFormatException>(() => Grammar.FromJsonSchema(schema));
        output.WriteLine(e.Message);
        if (pointer.Length > 0)
            Assert.Equal(pointer, e.JsonPointer);
    }

    /// <summary>Non-ASCII enum values come out whole on both kinds of vocabulary, also when tokens split their bytes.</summary>
    [Theory]
    [InlineData("stories260K-sp512")]
    [InlineData("llama2-sp32000")]
    [InlineData("llama3-bpe")]
    [InlineData("qwen3-bpe")]
    public void NonAsciiLiteralsSurviveTokenBoundaries(string vocabName)
    {
        Vocab vocab = Vocabs.ByName(vocabName);
        string[] values = ["é", "日本語", "naïve", "🎂 für"];
        Grammar grammar = Grammar.FromJsonSchema("""{"enum":["é","日本語","naïve","🎂 für"]}""");
        var seen = new HashSet<string>();
        for (ulong seed = 1; seed <= 40; seed++)
        {
            RandomModel.Output result = RandomModel.Generate(grammar, vocab, seed, maxTokens: 50);
            Assert.True(result.Finished);
            string value = JsonSerializer.Deserialize<string>(result.Text)!;
            Assert.Contains(value, values);
            seen.Add(value);
        }
        Assert.True(seen.Count >= 3, string.Join(",", seen));
    }
}
