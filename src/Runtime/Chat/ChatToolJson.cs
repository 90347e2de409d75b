using System;
using System.Buffers;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Llama.Compiled;

/// <summary>
/// A message as the chat templates' Jinja code sees it (Hugging Face's message dicts): a role, a string content and,
/// for an assistant's message, its tool calls. A <see cref="ChatMessage"/> of role <see cref="ChatRole.Tool"/> (or any
/// message with <see cref="FunctionResultContent"/>) becomes one <c>tool</c> message per result, as transformers takes them.
/// </summary>
internal sealed record TemplateMessage(string Role, string Content, IReadOnlyList<FunctionCallContent> ToolCalls)
{
    public bool HasToolCalls => ToolCalls.Count > 0;

    public static List<TemplateMessage> From(IEnumerable<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<TemplateMessage>();
        int index = 0;
        foreach (ChatMessage message in messages)
        {
            if (message is null)
                throw new ArgumentException($"Message {index} is null.", nameof(messages));
            index++;
            List<FunctionCallContent>? calls = null;
            List<FunctionResultContent>? results = null;
            foreach (AIContent content in message.Contents)
            {
                if (content is FunctionCallContent call)
                    (calls ??= []).Add(call);
                else if (content is FunctionResultContent result)
                    (results ??= []).Add(result);
            }
            if (results is not null)
            {
                foreach (FunctionResultContent result in results)
                    list.Add(new TemplateMessage("tool", ChatToolJson.ResultText(result), []));
            }
            else if (message.Role == ChatRole.Tool)
            {
                list.Add(new TemplateMessage("tool", message.Text, []));
            }
            else
            {
                list.Add(new TemplateMessage(message.Role.Value, message.Text, calls is null ? [] : calls));
            }
        }
        return list;
    }
}

/// <summary>
/// JSON as the chat templates write it: transformers' <c>tojson</c> filter is Python's
/// <c>json.dumps(x, ensure_ascii=False, indent=indent)</c> — <c>", "</c> and <c>": "</c> between items without an indent,
/// <c>","</c> and newlines with one, non-ASCII characters as they are. No reflection: values are written from
/// <see cref="JsonElement"/>s, JSON nodes, primitives, dictionaries and lists; anything else through
/// <see cref="AIJsonUtilities.DefaultOptions"/>' type info.
/// </summary>
internal static class ChatToolJson
{
    /// <summary>Appends <paramref name="element"/> as <c>tojson</c> (indent 0: none) writes it.</summary>
    public static void Write(StringBuilder text, JsonElement element, int indent = 0, int depth = 0)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
            {
                bool any = false;
                text.Append('{');
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    Separator(text, indent, depth, any);
                    any = true;
                    WriteString(text, property.Name);
                    text.Append(": ");
                    Write(text, property.Value, indent, depth + 1);
                }
                Close(text, indent, depth, any);
                text.Append('}');
                break;
            }
            case JsonValueKind.Array:
            {
                bool any = false;
                text.Append('[');
                foreach (JsonElement item in element.EnumerateArray())
                {
                    Separator(text, indent, depth, any);
                    any = true;
                    Write(text, item, indent, depth + 1);
                }
                Close(text, indent, depth, any);
                text.Append(']');
                break;
            }
            case JsonValueKind.String:
                WriteString(text, element.GetString()!);
                break;
            case JsonValueKind.Number:
                text.Append(element.GetRawText());
                break;
            case JsonValueKind.True:
                text.Append("true");
                break;
            case JsonValueKind.False:
                text.Append("false");
                break;
            default:
                text.Append("null");
                break;
        }
    }

    private static void Separator(StringBuilder text, int indent, int depth, bool any)
    {
        if (any)
            text.Append(indent > 0 ? "," : ", ");
        if (indent > 0)
            text.Append('\n').Append(' ', indent * (depth + 1));
    }

    private static void Close(StringBuilder text, int indent, int depth, bool any)
    {
        if (indent > 0 && any)
            text.Append('\n').Append(' ', indent * depth);
    }

    /// <summary>A JSON string literal: <c>"</c>, <c>\</c> and control characters escaped (as Python and JavaScript do), the rest as it is.</summary>
    public static void WriteString(StringBuilder text, string value)
    {
        text.Append('"');
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    bool loneSurrogate = char.IsHighSurrogate(c) ? i + 1 >= value.Length || !char.IsLowSurrogate(value[i + 1])
                        : char.IsLowSurrogate(c) && (i == 0 || !char.IsHighSurrogate(value[i - 1]));
                    if (c < 0x20 || loneSurrogate)
                        text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }

    /// <summary>The tool as Hugging Face's templates take it: <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>.</summary>
    public static JsonElement ToolElement(AIFunctionDeclaration tool)
    {
        return Build(writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("type", "function");
            writer.WritePropertyName("function");
            writer.WriteStartObject();
            writer.WriteString("name", tool.Name);
            if (!string.IsNullOrEmpty(tool.Description))
                writer.WriteString("description", tool.Description);
            writer.WritePropertyName("parameters");
            WriteParameters(writer, tool);
            writer.WriteEndObject();
            writer.WriteEndObject();
        });
    }

    /// <summary>The JSON schema of the function's parameters (an empty object's when it has none).</summary>
    public static void WriteParameters(Utf8JsonWriter writer, AIFunctionDeclaration tool)
    {
        if (tool.JsonSchema.ValueKind == JsonValueKind.Object)
        {
            tool.JsonSchema.WriteTo(writer);
        }
        else
        {
            writer.WriteStartObject();
            writer.WriteString("type", "object");
            writer.WritePropertyName("properties");
            writer.WriteStartObject();
            writer.WriteEndObject();
            writer.WriteEndObject();
        }
    }

    /// <summary>A call's arguments as a JSON object (an empty one for none).</summary>
    public static JsonElement ArgumentsElement(IDictionary<string, object?>? arguments)
    {
        return Build(writer =>
        {
            writer.WriteStartObject();
            if (arguments is not null)
            {
                foreach (KeyValuePair<string, object?> argument in arguments)
                {
                    writer.WritePropertyName(argument.Key);
                    WriteValue(writer, argument.Value);
                }
            }
            writer.WriteEndObject();
        });
    }

    /// <summary>
    /// The text a function's result becomes in the prompt: a string as it is (also a JSON string's value), anything else
    /// as compact JSON (what OpenAI-style clients send as a tool message's content); nothing for no result.
    /// </summary>
    public static string ResultText(FunctionResultContent result)
    {
        object? value = result.Result;
        switch (value)
        {
            case null:
                return result.Exception is { } e ? "Error: " + e.Message : "";
            case string s:
                return s;
            case JsonElement { ValueKind: JsonValueKind.String } element:
                return element.GetString()!;
            case JsonElement { ValueKind: JsonValueKind.Undefined }:
                return "";
            default:
                var buffer = new ArrayBufferWriter<byte>();
                using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                    WriteValue(writer, value);
                return Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
    }

    /// <summary>Writes a value without reflection where its type allows.</summary>
    public static void WriteValue(Utf8JsonWriter writer, object? value)
    {
        switch (value)
        {
            case null: writer.WriteNullValue(); break;
            case JsonElement element:
                if (element.ValueKind == JsonValueKind.Undefined)
                    writer.WriteNullValue();
                else
                    element.WriteTo(writer);
                break;
            case JsonDocument document: document.RootElement.WriteTo(writer); break;
            case JsonNode node: node.WriteTo(writer); break;
            case string s: writer.WriteStringValue(s); break;
            case bool b: writer.WriteBooleanValue(b); break;
            case int i: writer.WriteNumberValue(i); break;
            case long l: writer.WriteNumberValue(l); break;
            case short s: writer.WriteNumberValue(s); break;
            case byte b: writer.WriteNumberValue(b); break;
            case sbyte b: writer.WriteNumberValue(b); break;
            case ushort u: writer.WriteNumberValue(u); break;
            case uint u: writer.WriteNumberValue(u); break;
            case ulong u: writer.WriteNumberValue(u); break;
            case float f: writer.WriteNumberValue(f); break;
            case double d: writer.WriteNumberValue(d); break;
            case decimal m: writer.WriteNumberValue(m); break;
            case char c: writer.WriteStringValue(c.ToString()); break;
            case IDictionary<string, object?> dictionary:
                writer.WriteStartObject();
                foreach (KeyValuePair<string, object?> pair in dictionary)
                {
                    writer.WritePropertyName(pair.Key);
                    WriteValue(writer, pair.Value);
                }
                writer.WriteEndObject();
                break;
            case IList list when value is not Array { Rank: > 1 }:
                writer.WriteStartArray();
                foreach (object? item in list)
                    WriteValue(writer, item);
                writer.WriteEndArray();
                break;
            default:
                // AIJsonUtilities' options know the common types from a source-generated context; others need reflection
                // to be enabled (and are then not trimming-safe, as with any M.E.AI client).
                JsonSerializer.Serialize(writer, value, AIJsonUtilities.DefaultOptions.GetTypeInfo(value.GetType()));
                break;
        }
    }

    /// <summary>A JSON element built by <paramref name="write"/>.</summary>
    public static JsonElement Build(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
            write(writer);
        using JsonDocument document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.Clone();
    }

    /// <summary><see cref="Write"/> into a new string.</summary>
    public static string ToJson(JsonElement element, int indent = 0)
    {
        var text = new StringBuilder();
        Write(text, element, indent);
        return text.ToString();
    }
}
