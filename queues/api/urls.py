from django.urls import path

from .views import TopicApi, TopicListApi

urlpatterns = [
    path("topics", TopicListApi.as_view(), name="topic-list"),
    path("topics/", TopicListApi.as_view()),
    path("topics/<path:topic>", TopicApi.as_view(), name="topic"),
]
