using System.Collections.Generic;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator.Json;

/// <summary>
/// A parsed JSON value and where it sits in the config text, so diagnostics can point at the
/// exact key or value. Only the generator reads these trees; they never enter the pipeline.
/// </summary>
internal abstract class JsonNode
{
    protected JsonNode(TextSpan span) => Span = span;

    /// <summary>Characters of the value in the source text.</summary>
    public TextSpan Span { get; }

    /// <summary>The JSON type name used in diagnostics ("number", "string", ...).</summary>
    public abstract string Kind { get; }
}

internal sealed class JsonObject : JsonNode
{
    public JsonObject(TextSpan span, IReadOnlyList<JsonProperty> properties) : base(span) => Properties = properties;

    public IReadOnlyList<JsonProperty> Properties { get; }

    public override string Kind => "object";

    /// <summary>The last property with this name (JSON parsers commonly let later duplicates win).</summary>
    public JsonProperty? Find(string name)
    {
        for (int i = Properties.Count - 1; i >= 0; i--)
        {
            if (Properties[i].Name == name)
                return Properties[i];
        }
        return null;
    }
}

/// <summary>A <c>"name": value</c> pair; <see cref="NameSpan"/> locates the key.</summary>
internal sealed class JsonProperty
{
    public JsonProperty(string name, TextSpan nameSpan, JsonNode value)
    {
        Name = name;
        NameSpan = nameSpan;
        Value = value;
    }

    public string Name { get; }
    public TextSpan NameSpan { get; }
    public JsonNode Value { get; }
}

internal sealed class JsonArray : JsonNode
{
    public JsonArray(TextSpan span, IReadOnlyList<JsonNode> items) : base(span) => Items = items;

    public IReadOnlyList<JsonNode> Items { get; }

    public override string Kind => "array";
}

internal sealed class JsonString : JsonNode
{
    public JsonString(TextSpan span, string value) : base(span) => Value = value;

    public string Value { get; }

    public override string Kind => "string";
}

/// <summary>A number kept as its source text; callers decide whether it must be an integer.</summary>
internal sealed class JsonNumber : JsonNode
{
    public JsonNumber(TextSpan span, string text) : base(span) => Text = text;

    public string Text { get; }

    public override string Kind => "number";
}

internal sealed class JsonBoolean : JsonNode
{
    public JsonBoolean(TextSpan span, bool value) : base(span) => Value = value;

    public bool Value { get; }

    public override string Kind => "boolean";
}

internal sealed class JsonNull : JsonNode
{
    public JsonNull(TextSpan span) : base(span) { }

    public override string Kind => "null";
}
